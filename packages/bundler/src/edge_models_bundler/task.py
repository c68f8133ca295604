"""Write a MediaPipe `.task` bundle."""

from __future__ import annotations

import json
from pathlib import Path

from edge_models.formats.task import (
    EMBEDDER_ENTRY,
    METADATA_ENTRY,
    PER_LAYER_EMBEDDER_ENTRY,
    TFLITE_ENTRY,
    TOKENIZER_ENTRY,
    VISION_ADAPTER_ENTRY,
    VISION_ENCODER_ENTRY,
    encode_llm_params,
)
from edge_models.io.files import write_atomically
from edge_models.runtime.bundles import NOTES_ENTRY, SELF_TEST_ENTRY

from edge_models_bundler.options import BundleOptions
from edge_models_bundler.phone_model import phone_model
from edge_models_bundler.validate import BundleError, Report, check_task_chat, validate_inputs
from edge_models_bundler.zipwriter import DEFAULT_DATE_TIME, Source, write_aligned_zip

_OPTIONAL = {
    "embedder": EMBEDDER_ENTRY,
    "per_layer_embedder": PER_LAYER_EMBEDDER_ENTRY,
    "vision_encoder": VISION_ENCODER_ENTRY,
    "vision_adapter": VISION_ADAPTER_ENTRY,
}


def write_task(
    output: str | Path,
    tflite: str | Path,
    tokenizer: str | Path,
    options: BundleOptions,
    *,
    date_time: tuple[int, int, int, int, int, int] = DEFAULT_DATE_TIME,
    validate: bool = True,
    **extra_models: str | Path | None,
) -> Report:
    """Validate the inputs, then write `output` (.task) atomically; return the checks' report.

    `extra_models` takes the optional MediaPipe entries by keyword: embedder, per_layer_embedder,
    vision_encoder, vision_adapter (paths to .tflite files). Raises BundleError listing every
    problem, before anything is written. `date_time` is the zip timestamp of every entry (fixed by
    default so the same inputs give the same bytes).
    """
    output, tflite, tokenizer = Path(output), Path(tflite), Path(tokenizer)
    unknown = set(extra_models) - set(_OPTIONAL)
    if unknown:
        raise TypeError(f"write_task() got unexpected keyword arguments {sorted(unknown)}")
    report = validate_inputs(tflite, tokenizer, options) if validate else Report()
    if validate:
        check_task_chat(options, report)
    if output.suffix != ".task":
        report.problems.append(f"output {output}: a MediaPipe bundle must be named *.task")
    if output.resolve() in (tflite.resolve(), tokenizer.resolve()):
        report.problems.append(f"output {output} would overwrite an input")
    for key, entry in _OPTIONAL.items():
        path = extra_models.get(key)
        if path is not None and not Path(path).is_file():
            report.problems.append(f"{key} model {path}: no such file")
    if report.problems:
        raise BundleError(report.problems, report.warnings)

    with phone_model(tflite, output.parent, report) as model:
        # Entry order is MediaPipe's: model, tokenizer, metadata, then the optional models.
        sources = [
            Source(TFLITE_ENTRY, path=model),
            Source(TOKENIZER_ENTRY, data=tokenizer.read_bytes()),
            Source(METADATA_ENTRY, data=encode_llm_params(options.to_llm_params())),
        ]
        for key, entry in _OPTIONAL.items():
            if extra_models.get(key) is not None:
                sources.append(Source(entry, path=Path(extra_models[key])))
        if options.self_test is not None:
            sources.append(Source(SELF_TEST_ENTRY, data=json.dumps(options.self_test).encode()))
        if options.notes:
            sources.append(Source(NOTES_ENTRY, data=json.dumps(options.notes).encode()))
        write_atomically(output, lambda f: write_aligned_zip(f, sources, date_time))
    return report
