"""Bundling as one function, for the `bundle` verb, for core's `convert --bundle` and the demo (through the
`register_bundle_writer` hook) and for scripts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edge_models.io import console
from edge_models.spec import BundleRequest

from edge_models_bundler.options import BundleOptions, resolve_options
from edge_models_bundler.validate import BundleError


def bundle_model(
    output: Path,
    tflite: Path,
    tokenizer: Path | None = None,
    *,
    checkpoint: Path | None = None,
    model: str | None = None,
    notes: Mapping[str, str] | None = None,
    self_test: bool = True,
    **choices,
) -> Path:
    """Write `output` (`.task` or `.litertlm`) from `tflite` and `tokenizer` (or the checkpoint's tokenizer that the
    format carries). Start/stop tokens and the chat template come from `choices` (`resolve_options`' keyword
    arguments), then `checkpoint`'s token files, then the registered `model`'s defaults. Every check runs before
    anything is written; the bundle's self-test is recorded from the written file as our runtime reads it."""
    from edge_models.hf import read_checkpoint_tokens

    output, tflite = Path(output), Path(tflite)
    if tokenizer is None:
        if checkpoint is None:
            raise BundleError(["a bundle needs the model's tokenizer: give a tokenizer or a checkpoint with one"])
        tokenizer = checkpoint_tokenizer(checkpoint, output)
    options = resolve_options(
        model,
        checkpoint=read_checkpoint_tokens(checkpoint, tokenizer) if checkpoint is not None else None,
        **choices,
    ).replace(notes=dict(notes or {}))
    write_and_report(output, tflite, Path(tokenizer), options, self_test)
    return output


def write_requested(request: BundleRequest) -> Path:
    """The bundle core asks for (`convert --bundle`, the demo)."""
    try:
        return bundle_model(
            request.output,
            request.tflite,
            request.tokenizer,
            checkpoint=request.checkpoint,
            model=request.model,
            notes=request.notes,
            self_test=request.self_test,
        )
    except BundleError as e:
        print_warnings(e.warnings)
        raise


def checkpoint_tokenizer(checkpoint: Path, output: Path) -> Path:
    """The checkpoint's tokenizer file that `output`'s format carries: `.task` only SentencePiece."""
    from edge_models.hf import find_tokenizer

    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    prefer = (
        ("tokenizer.model", "tokenizer.json") if output.suffix == ".task" else ("tokenizer.json", "tokenizer.model")
    )
    found = find_tokenizer(directory, prefer)
    if found is None:
        raise BundleError([f"no tokenizer.json or tokenizer.model in {directory}: give --tokenizer"])
    return found


def write_and_report(output: Path, tflite: Path, tokenizer: Path, options: BundleOptions, self_test: bool = True):
    from edge_models_bundler import selftest, write_bundle

    report = write_bundle(output, tflite, tokenizer, options)
    print_warnings(report.warnings)
    for note in report.notes:
        console.err(note)
    if self_test:
        # Recorded from the written file as our runtime reads it, then written into it (the checks run again).
        write_bundle(output, tflite, tokenizer, options.replace(self_test=selftest.record(output)))
    size = output.stat().st_size
    start = repr(options.start_token) if options.start_token else "none"
    template = ", Jinja chat template" if options.chat_template and output.suffix == ".litertlm" else ""
    console.out(f"wrote {output} ({size / 1e6:,.1f} MB): start {start}, stop {list(options.stop_tokens)!r}{template}")


def print_warnings(warnings: list[str]) -> None:
    for w in warnings:
        console.err(f"warning: {w}")
