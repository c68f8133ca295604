"""The `edge-models bundle` verb: write (default), `inspect` and `check` bundles."""

from __future__ import annotations

import functools
from pathlib import Path

import click
from edge_models.cli.base import CHECKPOINT, logged
from edge_models.io import console

from edge_models_bundler.api import print_warnings
from edge_models_bundler.validate import BundleError, Report


def _errors_as_click(func):
    """Our errors are the user's to fix: one clean message, exit code 1, no traceback."""
    from edge_models.formats.task import TaskFormatError
    from edge_models.io.files import WriteError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BundleError as e:
            print_warnings(e.warnings)
            raise click.ClickException(str(e)) from None
        except (TaskFormatError, LookupError, ValueError, FileNotFoundError, WriteError) as e:
            raise click.ClickException(str(e)) from None

    return wrapper


_TEMPLATE_OPTIONS = {
    "prompt_prefix_user": "user_prefix",
    "prompt_suffix_user": "user_suffix",
    "prompt_prefix_model": "model_prefix",
    "prompt_suffix_model": "model_suffix",
    "prompt_prefix_system": "system_prefix",
    "prompt_suffix_system": "system_suffix",
}


@click.group("bundle", invoke_without_command=True)
@click.option("--tflite", type=click.Path(path_type=Path), help="converted model (.tflite with prefill/decode)")
@click.option(
    "--tokenizer",
    type=click.Path(path_type=Path),
    help="SentencePiece tokenizer.model (or tokenizer.json for .litertlm)",
)
@click.option(
    "--checkpoint",
    type=CHECKPOINT,
    help="HF checkpoint directory, or ORG/NAME[@REV] in the local Hugging Face cache: its tokenizer, "
    "tokenizer_config/generation_config tokens and chat template",
)
@click.option("--model", help="registered model whose start/stop tokens and chat template fill what is not given")
@click.option("--start-token", help="token that starts every sequence, e.g. '<bos>'")
@click.option("--no-start-token", is_flag=True, help="the model takes no start token (.litertlm only)")
@click.option(
    "--chat-template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Jinja chat template file (as transformers' chat_template.jinja)",
)
@click.option("--stop-token", "stop_tokens", multiple=True, help="token that ends generation (repeatable)")
@click.option("--prompt-prefix-user", default=None, help="text before each user turn")
@click.option("--prompt-suffix-user", default=None, help="text after each user turn")
@click.option("--prompt-prefix-model", default=None, help="text before each model turn")
@click.option("--prompt-suffix-model", default=None, help="text after each model turn")
@click.option("--prompt-prefix-system", default=None, help="text before a system message")
@click.option("--prompt-suffix-system", default=None, help="text after a system message")
@click.option("--system-prompt", default=None, help="fixed text fed at the start of every session")
@click.option("--user-role-token", default=None)
@click.option("--system-role-token", default=None)
@click.option("--model-role-token", default=None)
@click.option("--end-role-token", default=None)
@click.option("--bytes-to-unicode", is_flag=True, help="tokenizer pieces use GPT-2's byte-to-unicode mapping")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="model.task or model.litertlm")
@click.option(
    "--note",
    "notes",
    multiple=True,
    help="KEY=VALUE recorded in the bundle and shown by `bundle inspect` (repeatable; convert --bundle records the "
    "recipe and a merged LoRA adapter)",
)
@click.option(
    "--self-test/--no-self-test",
    default=True,
    show_default=True,
    help="record a prompt and the model's greedy tokens in the bundle, for `bundle check --run`",
)
@click.pass_context
@logged
@_errors_as_click
def bundle(
    ctx: click.Context,
    tflite: Path | None,
    tokenizer: Path | None,
    model: str | None,
    output: Path | None,
    checkpoint: Path | None = None,
    self_test: bool = True,
    no_start_token: bool = False,
    chat_template: Path | None = None,
    start_token: str | None = None,
    stop_tokens: tuple[str, ...] = (),
    system_prompt: str | None = None,
    user_role_token: str | None = None,
    system_role_token: str | None = None,
    model_role_token: str | None = None,
    end_role_token: str | None = None,
    bytes_to_unicode: bool = False,
    notes: tuple[str, ...] = (),
    **template: str | None,
) -> None:
    """Bundle a .tflite and its tokenizer into a MediaPipe .task (or LiteRT-LM .litertlm).

    Every check runs before anything is written; a failure leaves no file behind.
    Subcommands: `inspect FILE`, `check FILE`.
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [
        flag
        for flag, value in (("--tflite", tflite), ("--tokenizer or --checkpoint", tokenizer or checkpoint),
                            ("-o/--output", output))
        if value is None
    ]  # fmt: skip
    if missing:
        raise click.UsageError(f"bundle needs {', '.join(missing)} (or a subcommand: inspect, check)")
    if no_start_token and start_token:
        raise click.UsageError("--start-token and --no-start-token exclude each other")
    from edge_models.hf import ChatTemplate

    from edge_models_bundler.api import bundle_model

    overrides = {field: template[opt] for opt, field in _TEMPLATE_OPTIONS.items() if template.get(opt) is not None}
    bundle_model(
        output,
        tflite,
        tokenizer,
        checkpoint=checkpoint,
        model=model,
        notes=_parse_notes(notes),
        self_test=self_test,
        start_token=start_token,
        no_start_token=no_start_token,
        stop_tokens=stop_tokens,
        template_overrides=overrides,
        chat_template=ChatTemplate(chat_template.read_text(encoding="utf-8"), str(chat_template))
        if chat_template
        else None,
        system_prompt=system_prompt,
        user_role_token=user_role_token,
        system_role_token=system_role_token,
        model_role_token=model_role_token,
        end_role_token=end_role_token,
        bytes_to_unicode=bytes_to_unicode,
    )


def _parse_notes(notes: tuple[str, ...]) -> dict[str, str]:
    bad = [n for n in notes if "=" not in n or not n.partition("=")[0].strip()]
    if bad:
        raise click.UsageError(f"--note takes KEY=VALUE, got {bad[0]!r}")
    return {key.strip(): value.strip() for key, _, value in (n.partition("=") for n in notes)}


@bundle.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@logged
@_errors_as_click
def inspect_cmd(file: Path) -> None:
    """Show a .task's or .litertlm's sections, metadata, model signatures and tokenizer."""
    from edge_models_bundler.inspect import describe_litertlm, describe_task

    console.out(describe_litertlm(file) if file.suffix == ".litertlm" else describe_task(file))


@bundle.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run", "run", is_flag=True, help="replay the bundle's self-test in our runtime and in LiteRT-LM")
@logged
@_errors_as_click
def check_cmd(file: Path, run: bool) -> None:
    """Run every validation on an existing .task or .litertlm; exit 1 on a problem."""
    from edge_models_bundler.check import check_bundle

    report: Report = check_bundle(file)
    print_warnings(report.warnings)
    if report.problems:
        for p in report.problems:
            console.err(f"problem: {p}")
        raise SystemExit(1)
    info = report.tflite
    console.out(
        f"{file}: OK ({', '.join(info.signatures) if info else ''}; "
        f"{report.tokenizer_pieces} pieces; KV {info.kv_len if info else '?'})"
    )
    if run:
        from edge_models_bundler.selftest import replay

        result = replay(file)
        console.out(f"self-test: {result.prompt!r} -> {result.expected!r}")
        for r in result.results:
            verdict = "agrees" if r.agreed else "DIFFERS" if r.ran else "not run"
            console.out(f"  {r.runtime:<12} {verdict}: {r.detail}")
        if not result.passed:
            raise SystemExit(1)
