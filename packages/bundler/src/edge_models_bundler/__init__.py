"""edge-models-bundler: MediaPipe `.task` and LiteRT-LM `.litertlm` bundles, validated before they are written.

Python API:
    write_task(output, tflite, tokenizer, options)      -> Report
    write_litertlm(output, tflite, tokenizer, options)  -> Report
    write_bundle(output, ...)   picks the format from the output's suffix
    check_bundle(path)          -> Report (problems, warnings) for an existing .task
    describe_task(path)         -> str, what `edge-models bundle inspect` prints
    resolve_options(model, ...) -> BundleOptions, defaults from a registered model spec
The format itself (entry names, METADATA codec, safe reader) lives in core: edge_models.formats.task.
"""

from __future__ import annotations

from pathlib import Path

from edge_models_bundler.check import check_bundle
from edge_models_bundler.inspect import describe_task
from edge_models_bundler.litertlm import write_litertlm
from edge_models_bundler.options import BundleOptions, resolve_options
from edge_models_bundler.task import write_task
from edge_models_bundler.validate import BundleError, Report
from edge_models_bundler.zipwriter import DEFAULT_DATE_TIME

__version__ = "0.1.0"


def write_bundle(output: str | Path, tflite: str | Path, tokenizer: str | Path, options: BundleOptions) -> Report:
    """`.task` or `.litertlm`, by the suffix of `output`."""
    if Path(output).suffix == ".litertlm":
        return write_litertlm(output, tflite, tokenizer, options)
    return write_task(output, tflite, tokenizer, options)


__all__ = [
    "DEFAULT_DATE_TIME",
    "BundleError",
    "BundleOptions",
    "Report",
    "check_bundle",
    "describe_task",
    "resolve_options",
    "write_bundle",
    "write_litertlm",
    "write_task",
]
