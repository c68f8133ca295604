"""`edge-models cache`: list and clear the files the runtime caches (packed weights per model, bundles' models)."""

from __future__ import annotations

import click

from edge_models.io import console


@click.group("cache", invoke_without_command=True)
@click.pass_context
def cache_group(ctx) -> None:
    """List the runtime's cache files with their sizes: XNNPACK packed weights (one per model loaded) and bundles'
    models copied out to be memory-mapped; `clear` removes them.

    They live in $EDGE_MODELS_CACHE_DIR (default ~/.cache/edge-models), in xnnpack/ and models/; `edge-models
    --no-weight-cache VERB` loads without them."""
    if ctx.invoked_subcommand is not None:
        return
    from edge_models.runtime.weight_cache import cache_root, cached_files

    files = cached_files()
    for path, size in files:
        console.out(f"{size / 1e6:>10,.1f} MB  {path.name}")
    total = sum(size for _, size in files)
    console.out(f"{len(files)} cache file(s), {total / 1e6:,.1f} MB in {cache_root()}")


@cache_group.command("clear")
def clear() -> None:
    """Remove every cache file (they are made again on the next load)."""
    from edge_models.runtime.weight_cache import cache_root
    from edge_models.runtime.weight_cache import clear as clear_caches

    removed, freed = clear_caches()
    console.out(f"removed {removed} cache file(s), {freed / 1e6:,.1f} MB, from {cache_root()}")
