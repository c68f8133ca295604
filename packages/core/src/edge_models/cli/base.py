"""The `edge-models` group and what every verb module shares: error handling, option parsing."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
@click.version_option(package_name="edge-models")
@click.option("-v", "--verbose", is_flag=True, help="show native and library logs (by default they go to a log file)")
@click.option(
    "--no-weight-cache",
    is_flag=True,
    help="load models without the packed-weight cache (see `edge-models cache`): every load packs the weights",
)
def cli(verbose: bool, no_weight_cache: bool) -> None:
    """Re-author, verify, quantize, convert and run LLMs for on-device inference."""
    if no_weight_cache:
        import os

        from edge_models.runtime.weight_cache import ENV_OFF

        os.environ[ENV_OFF] = "1"  # an environment variable: processes the verb starts inherit it


def _is_main_process() -> bool:
    import sys

    return getattr(sys.modules.get("__main__"), "__file__", "").endswith(("edge-models", "__main__.py"))


def logged(func):
    """Run a verb with native and library output sent to its log file (`edge-models -v VERB` shows it)."""
    import functools

    from edge_models.io import console

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        verbose = bool(ctx.find_root().params.get("verbose"))
        # A command-line process ends after its verb: native teardown output at exit goes to the log too.
        with console.quiet(ctx.info_name, verbose, until_exit=_is_main_process()):
            return func(*args, **kwargs)

    return wrapper


class UserError(click.ClickException):
    """Errors a user can fix: printed as one line, exit code 1, no traceback."""


def friendly(func):
    """Turn our own error types into clean CLI errors."""
    import functools

    from edge_models.io.files import WriteError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, LookupError, FileNotFoundError, WriteError) as e:
            raise UserError(str(e)) from None

    return wrapper


class CheckpointParam(click.ParamType):
    """`--checkpoint`: a local file or folder, or a Hugging Face id `ORG/NAME[@REVISION]` found in the local hub
    cache (never downloaded). Either way the verb gets a local Path."""

    name = "PATH|ORG/NAME[@REV]"

    def convert(self, value, param, ctx) -> Path:
        from edge_models.hf.hub_cache import HubCacheError, resolve_checkpoint

        try:
            path = resolve_checkpoint(value)
        except HubCacheError as e:
            # Not a usage mistake but a missing download: one line saying what to run, without the usage banner.
            raise UserError(str(e)) from None
        if not path.exists():
            self.fail(f"{value}: no such file or directory, nor a Hugging Face id ORG/NAME", param, ctx)
        return path


CHECKPOINT = CheckpointParam()


def lengths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
