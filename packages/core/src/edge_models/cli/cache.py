"""`edge-models cache`: list and clear the packed-weight caches the runtime writes (one file per model it loaded)."""

from __future__ import annotations

import click

from edge_models import console


@click.group("cache", invoke_without_command=True)
@click.pass_context
def cache_group(ctx) -> None:
    """List XNNPACK packed-weight caches (one per model the runtime loaded) with their sizes; `clear` removes them.

    They live in $EDGE_MODELS_CACHE_DIR/xnnpack (default ~/.cache/edge-models/xnnpack); `edge-models
    --no-weight-cache VERB` loads without one."""
    if ctx.invoked_subcommand is not None:
        return
    from edge_models.runtime.weight_cache import cache_dir, cached_files

    files = cached_files()
    for path, size in files:
        console.out(f"{size / 1e6:>10,.1f} MB  {path.name}")
    total = sum(size for _, size in files)
    console.out(f"{len(files)} cache file(s), {total / 1e6:,.1f} MB in {cache_dir()}")


@cache_group.command("clear")
def clear() -> None:
    """Remove every packed-weight cache file (they are rebuilt on the next load)."""
    from edge_models.runtime.weight_cache import cache_dir
    from edge_models.runtime.weight_cache import clear as clear_caches

    removed, freed = clear_caches()
    console.out(f"removed {removed} cache file(s), {freed / 1e6:,.1f} MB, from {cache_dir()}")
