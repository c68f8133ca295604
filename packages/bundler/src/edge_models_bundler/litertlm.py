"""Write a LiteRT-LM `.litertlm` bundle through `litert-lm-builder`.

Unlike `.task`, it also carries an HF `tokenizer.json`: the route for byte-level BPE models
(Phi-2, SmolLM-style Llamas) whose tokenizer SentencePiece cannot represent.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from edge_models.io.files import write_atomically
from edge_models.runtime.bundles import NOTES_KEY, SELF_TEST_KEY

from edge_models_bundler.options import FUNCTION_CALLING_TYPES, BundleOptions
from edge_models_bundler.phone_model import phone_model
from edge_models_bundler.validate import (
    BundleError,
    Report,
    chat_starts_with,
    check_model,
    check_template,
    check_tokens,
    check_vocab,
    load_sentencepiece,
)


def _load_tokenizer(tokenizer: Path, report: Report):
    if not tokenizer.is_file():
        report.problems.append(f"tokenizer {tokenizer}: no such file")
        return None
    if tokenizer.suffix == ".json":
        from edge_models.runtime.tokenizer import HFTokenizer, TokenizerError

        try:
            tok = HFTokenizer(tokenizer)
        except TokenizerError as e:
            report.problems.append(str(e))
            return None
        report.tokenizer_pieces = tok.vocab_size
        return tok
    return load_sentencepiece(tokenizer.read_bytes(), str(tokenizer), report)


def _metadata(options: BundleOptions, tok, kv_len: int | None) -> bytes:
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    meta = llm_metadata_pb2.LlmMetadata()
    # Token ids, not strings: the runtime would tokenize a string like "<s>" as plain text. LiteRT-LM puts the start
    # token before every conversation, so it is set only when the chat template would write it there itself.
    if chat_starts_with(options):
        meta.start_token.token_ids.ids.append(tok.piece_to_id(options.start_token))
    for stop in options.stop_tokens:
        meta.stop_tokens.add().token_ids.ids.append(tok.piece_to_id(stop))
    t = options.template
    for role, (prefix, suffix) in (
        ("user", (t.user_prefix, t.user_suffix)),
        ("model", (t.model_prefix, t.model_suffix)),
        ("system", (t.system_prefix, t.system_suffix)),
    ):
        if prefix or suffix:
            affixes = getattr(meta.prompt_templates, role)
            affixes.prefix = prefix
            affixes.suffix = suffix
    if options.chat_template is not None:
        meta.jinja_prompt_template = options.chat_template.for_litert_lm()
    if kv_len:
        meta.max_num_tokens = kv_len
    getattr(meta.llm_model_type, options.litertlm_model_type).SetInParent()
    if supports_function_calling(options):
        meta.supports_function_calling = True
    return meta.SerializeToString()


def supports_function_calling(options: BundleOptions) -> bool:
    """Whether LiteRT-LM may offer tools to the bundle's model: its type parses calls and its chat template shows
    tools (LiteRT-LM renders them through the template's `tools`)."""
    if options.function_calling is not None:
        return options.function_calling
    template = options.chat_template
    return options.litertlm_model_type in FUNCTION_CALLING_TYPES and template is not None and template.reads_tools


def write_litertlm(
    output: str | Path,
    tflite: str | Path,
    tokenizer: str | Path,
    options: BundleOptions,
) -> Report:
    """Validate, then write `output` (.litertlm) atomically. `tokenizer` is a SentencePiece .model or tokenizer.json."""
    output, tflite, tokenizer = Path(output), Path(tflite), Path(tokenizer)
    report = Report()
    tok = _load_tokenizer(tokenizer, report)
    if tok is not None:
        check_tokens(options, tok.piece_to_id, str(tokenizer), report)
    check_template(options, tok.piece_to_id if tok is not None else None, report)
    if options.system_prompt:
        report.problems.append("--system-prompt has no field in .litertlm; use --prompt-prefix-system/-suffix-system")
    check_model(tflite, report)
    check_vocab(report.tokenizer_pieces, report.tflite, report)
    if output.suffix != ".litertlm":
        report.problems.append(f"output {output}: a LiteRT-LM bundle must be named *.litertlm")
    if options.start_token is not None and not chat_starts_with(options):
        report.warnings.append(
            f"the chat template does not begin with the start token {options.start_token!r}, so the bundle sets "
            "none: LiteRT-LM chats match transformers', plain-text sessions get no start token"
        )
    if report.problems:
        raise BundleError(report.problems, report.warnings)

    import json

    import litert_lm_builder as lb

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        meta_path = Path(tmp) / "llm_metadata.pb"
        meta_path.write_bytes(_metadata(options, tok, report.tflite.kv_len if report.tflite else None))
        builder = lb.LitertLmFileBuilder()
        builder.add_system_metadata(lb.Metadata(key="Authors", value="edge-models", dtype=lb.DType.STRING))
        if options.self_test is not None:
            record = json.dumps(options.self_test)
            builder.add_system_metadata(lb.Metadata(key=SELF_TEST_KEY, value=record, dtype=lb.DType.STRING))
        if options.notes:
            notes = json.dumps(options.notes)
            builder.add_system_metadata(lb.Metadata(key=NOTES_KEY, value=notes, dtype=lb.DType.STRING))
        model = stack.enter_context(phone_model(tflite, output.parent, report))
        builder.add_tflite_model(str(model), lb.TfLiteModelType.PREFILL_DECODE)
        if tokenizer.suffix == ".json":
            builder.add_hf_tokenizer(str(tokenizer))
        else:
            builder.add_sentencepiece_tokenizer(str(tokenizer))
        builder.add_llm_metadata(str(meta_path))
        write_atomically(output, builder.build)
    return report
