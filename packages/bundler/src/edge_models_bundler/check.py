"""Check and describe an existing `.task` bundle (ours or anyone's)."""

from __future__ import annotations

from pathlib import Path

from edge_models.formats.task import KNOWN_ENTRIES, TaskBundle, TaskFormatError, read_task
from edge_models.runtime.bundles import NOTES_ENTRY, SELF_TEST_ENTRY

from edge_models_bundler.options import BundleOptions
from edge_models_bundler.validate import (
    Report,
    check_model,
    check_template,
    check_tokens,
    check_vocab,
    load_sentencepiece,
)


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model)


def check_bundle(path: str | Path) -> Report:
    """Run every validation on the bundle at `path`; never raises for a bad bundle, returns the problems."""
    path = Path(path)
    report = Report()
    if path.suffix == ".litertlm":
        check_litertlm(path, report)
        return report
    try:
        bundle = read_task(path)
    except TaskFormatError as e:
        report.problems.append(str(e))
        return report
    check_task(bundle, report)
    return report


def check_litertlm(path: Path, report: Report) -> None:
    from edge_models.runtime.bundles import BundleFormatError, read_bundle

    try:
        contents = read_bundle(path)
    except (BundleFormatError, ValueError) as e:
        report.problems.append(str(e))
        return
    tok = contents.tokenizer
    report.tokenizer_pieces = tok.vocab_size
    options = BundleOptions(contents.start_token, contents.stop_tokens, contents.affixes)
    check_tokens(options, tok.piece_to_id, "the bundled tokenizer", report)
    if contents.chat_template is not None:
        from edge_models.hf import ChatTemplateError

        try:
            contents.chat_template.check()
        except ChatTemplateError as e:
            report.problems.append(str(e))
    try:
        interpreter = _interpreter(contents.tflite)
    except Exception as e:  # noqa: BLE001 - the interpreter raises bare errors; its message says what is wrong
        report.problems.append(f"{path}: the prefill/decode model is not a loadable .tflite model ({e})")
        return
    check_model(f"{path}:TFLiteModel", report, interpreter=interpreter)
    check_vocab(report.tokenizer_pieces, report.tflite, report)


def check_task(bundle: TaskBundle, report: Report) -> None:
    for entry in bundle.entries.values():
        if not entry.aligned:
            report.problems.append(
                f"entry {entry.name} starts at offset {entry.offset}, not 4-byte aligned: "
                "MediaPipe memory-maps entries and needs aligned data"
            )
        if entry.name not in (*KNOWN_ENTRIES, SELF_TEST_ENTRY, NOTES_ENTRY):
            report.warnings.append(f"entry {entry.name!r} is not one MediaPipe reads")
    params = bundle.params
    if params.start_token is None:
        if params.start_token_id is None:
            report.problems.append("METADATA has no start token")
        else:
            report.warnings.append(f"METADATA gives the start token as id {params.start_token_id}, not as a string")
    options = BundleOptions.from_llm_params(params)
    tok = load_sentencepiece(bundle.tokenizer_model, f"{bundle.path}:TOKENIZER_MODEL", report)
    piece_to_id = tok.piece_to_id if tok is not None else None
    if tok is not None:
        if params.start_token is None:
            options = options.replace(start_token=tok._sp.IdToPiece(params.start_token_id or 0))
        check_tokens(options, piece_to_id, "the bundled tokenizer", report)
    elif not params.stop_tokens:
        report.problems.append("no stop token: generation never ends")
    check_template(options, piece_to_id, report)
    try:
        interpreter = _interpreter(bundle.tflite)
    except Exception as e:  # noqa: BLE001 - the interpreter raises bare errors; its message says what is wrong
        report.problems.append(f"{bundle.path}:TF_LITE_PREFILL_DECODE is not a loadable .tflite model ({e})")
        return
    check_model(f"{bundle.path}:TF_LITE_PREFILL_DECODE", report, interpreter=interpreter)
    check_vocab(report.tokenizer_pieces, report.tflite, report)
    if params.vocab_size and report.tflite and params.vocab_size != report.tflite.vocab_size:
        report.problems.append(
            f"METADATA says vocab_size {params.vocab_size}, the model's logits have {report.tflite.vocab_size}"
        )
