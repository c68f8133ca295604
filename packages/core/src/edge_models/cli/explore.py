"""Verbs that look inside a converted model: explore (Model Explorer, or a summary), profile."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_models.cli.base import CHECKPOINT, UserError, cli, friendly, logged
from edge_models.io import console


def _model_file(path: Path):
    from edge_models.tools.explore import ExploreError, model_file

    try:
        return model_file(path)
    except ExploreError as e:
        raise UserError(str(e)) from None


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--summary", is_flag=True, help="print what the graph holds instead of opening Model Explorer")
@click.option("--json", "as_json", is_flag=True, help="with --summary: as JSON")
@click.option("--port", type=int, help="Model Explorer's local server port [a free one]")
@click.option("--no-browser", is_flag=True, help="start the server and print its URL, open no browser")
@click.option("--checkpoint", type=CHECKPOINT, help="overlay each block's error against this fp32 checkpoint (debug)")
@click.option("--model", "model_name", default="auto", show_default=True, help="with --checkpoint: the model name")
@click.option(
    "--profile",
    "profile_json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="overlay the part times of `edge-models profile FILE --json > PROFILE.json`",
)
@friendly
def explore(file, summary, as_json, port, no_browser, checkpoint, model_name, profile_json) -> None:
    """Open FILE (.tflite, .task, .litertlm) in Model Explorer, one graph per signature, with overlays: each
    weight's bits, and where given, per-block error (--checkpoint) and per-part time (--profile)."""
    from edge_models.tflite.reading import mapped

    with _model_file(file) as tflite:
        if summary:
            from edge_models.tflite.summary import format_summary, summarize

            with mapped(tflite) as data:
                found = summarize(data)
            console.out(json.dumps(found.to_json(), indent=1) if as_json else format_summary(found, file.name))
            return
        if as_json:
            raise UserError("--json goes with --summary")
        _explore(file, tflite, port, no_browser, checkpoint, model_name, profile_json)


def _explore(file, tflite, port, no_browser, checkpoint, model_name, profile_json) -> None:
    from edge_models.tflite.reading import mapped
    from edge_models.tools import explore as tool
    from edge_models.tools import overlays

    # The overlays asked for first: Model Explorer colours the graph with the first one it is given.
    found = {}
    with mapped(tflite) as data:
        if profile_json is not None:
            try:
                profile = json.loads(profile_json.read_text())
                found["part time (ms)"] = overlays.profile_overlay(data, profile)
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{profile_json}: not the JSON of `edge-models profile --json`") from None
    if checkpoint is not None:
        from edge_models.cli.check import DEBUG_PROMPT, debug_rows

        rows = debug_rows(tflite, checkpoint, model_name, DEBUG_PROMPT, None)
        with mapped(tflite) as data:
            found.update(overlays.debug_overlays(data, rows))
    with mapped(tflite) as data:
        found["weight bits"] = overlays.quantization_overlay(data)
    config = tool.explorer_config(tflite, {name: overlays.overlay_json(o) for name, o in found.items()})
    port = port or tool.free_port()
    console.out(f"{file.name}: Model Explorer at {tool.url(config, port)}")
    console.out(f"overlays: {', '.join(found)} (choose them in the side panel); Ctrl+C stops the server")
    tool.serve(config, port, open_browser=not no_browser)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--signature", "signatures", multiple=True, help="[decode and the shortest prefill]")
@click.option("--rounds", default=20, show_default=True, help="interleaved timed rounds (median)")
@click.option("--threads", default=None, type=int, help="[the CPUs this process may use]")
@click.option("--json", "as_json", is_flag=True, help="print JSON (also the overlay `explore --profile` takes)")
@logged
@friendly
def profile(file, signatures, rounds, threads, as_json) -> None:
    """Where a decode step and a prefill of FILE go: time per part (embedding, each block, the KV cache writes, the
    LM head), the weights each reads and the share of this machine's read bandwidth it reaches. Each part is its
    ops cut out as a signature of their own (same weights, same kernels) and timed beside the whole signature."""
    import re

    from edge_models.tflite.checks import os_threads
    from edge_models.tflite.reading import signature_names
    from edge_models.tools.profile import format_profile, profile_file

    with _model_file(file) as tflite:
        names = signature_names(tflite)
        if not signatures:
            prefills = sorted((int(m.group(1)), s) for s in names if (m := re.fullmatch(r"prefill_(\d+)", s)))
            signatures = [s for s in ("decode", prefills[0][1] if prefills else None) if s in names]
        unknown = [s for s in signatures if s not in names]
        if unknown:
            raise UserError(f"{file}: no signature {', '.join(unknown)} (it has {', '.join(names)})")
        found = profile_file(tflite, list(signatures), threads or os_threads(), rounds)
    found.file = str(file)
    console.out(json.dumps(found.to_json(), indent=1) if as_json else format_profile(found))
