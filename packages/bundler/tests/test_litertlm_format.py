"""Core's .litertlm reader (edge_models.runtime.read_bundle) on files written by LiteRT-LM's own builder, with a
stand-in for the model: every field the runtime takes from a bundle, and the errors of files that are not one.
Writing a .litertlm from a converted model, and LiteRT-LM running it, are in test_bundle.py and test_litert_lm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

lb = pytest.importorskip("litert_lm_builder", reason="litert-lm-builder comes with the bundler's dependencies")

from edge_models.runtime import read_bundle
from edge_models.runtime.bundles import NOTES_KEY, BundleFormatError

# Not a .tflite: the reader carries the model section as bytes, so any content shows whether it finds the right span.
STAND_IN_MODEL = bytes(range(256)) * 9
NOTES = {"recipe": "int8", "merged LoRA": "support-bot"}


def _litertlm(tmp_path: Path, tokenizer: Path | None, *, model: bool = True, notes: dict | None = None) -> Path:
    """A .litertlm from litert_lm_builder: start token <s>, stop tokens </s> and <end_of_turn> (as ids), user and
    model affixes, a Jinja template, a KV cache of 64."""
    import sentencepiece as spm
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    meta = llm_metadata_pb2.LlmMetadata()
    if tokenizer is not None:
        sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
        meta.start_token.token_ids.ids.append(sp.PieceToId("<s>"))
        for stop in ("</s>", "<end_of_turn>"):
            meta.stop_tokens.add().token_ids.ids.append(sp.PieceToId(stop))
    meta.prompt_templates.user.prefix = "<start_of_turn>user\n"
    meta.prompt_templates.user.suffix = "<end_of_turn>\n"
    meta.prompt_templates.model.prefix = "<start_of_turn>model\n"
    meta.jinja_prompt_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    meta.max_num_tokens = 64
    meta.llm_model_type.generic_model.SetInParent()
    (tmp_path / "meta.pb").write_bytes(meta.SerializeToString())
    (tmp_path / "m.tflite").write_bytes(STAND_IN_MODEL)

    builder = lb.LitertLmFileBuilder()
    builder.add_system_metadata(lb.Metadata(key="Authors", value="edge-models", dtype=lb.DType.STRING))
    if notes is not None:
        builder.add_system_metadata(lb.Metadata(key=NOTES_KEY, value=json.dumps(notes), dtype=lb.DType.STRING))
    if model:
        builder.add_tflite_model(str(tmp_path / "m.tflite"), lb.TfLiteModelType.PREFILL_DECODE)
    if tokenizer is not None:
        builder.add_sentencepiece_tokenizer(str(tokenizer))
    builder.add_llm_metadata(str(tmp_path / "meta.pb"))
    out = tmp_path / "b.litertlm"
    with open(out, "wb") as f:
        builder.build(f)
    return out


def test_every_field_the_runtime_needs_is_read_back(tmp_path, tokenizer):
    bundle = read_bundle(_litertlm(tmp_path, tokenizer, notes=NOTES))
    assert bundle.tflite == STAND_IN_MODEL
    assert bundle.start_token == "<s>" and bundle.stop_tokens == ("</s>", "<end_of_turn>")
    assert (bundle.affixes.user_prefix, bundle.affixes.user_suffix) == ("<start_of_turn>user\n", "<end_of_turn>\n")
    assert (bundle.affixes.model_prefix, bundle.affixes.system_prefix) == ("<start_of_turn>model\n", "")
    assert bundle.chat_template.render([{"role": "user", "content": "kalo"}], False) == "kalo"
    assert bundle.notes == NOTES and bundle.self_test is None
    assert [name for name, _ in bundle.sections] == ["TFLiteModel", "SP_Tokenizer", "LlmMetadataProto"]
    assert bundle.tokenizer.vocab_size == 256
    assert bundle.tokenizer.decode(bundle.tokenizer.encode("kalo mine")) == "kalo mine"


def test_missing_sections_are_named(tmp_path, tokenizer):
    with pytest.raises(BundleFormatError, match=r"b.litertlm: the bundle has no tokenizer section"):
        read_bundle(_litertlm(tmp_path, None))
    with pytest.raises(BundleFormatError, match=r"b.litertlm: the bundle has no prefill/decode model section"):
        read_bundle(_litertlm(tmp_path, tokenizer, model=False))


def test_files_that_are_not_a_litertlm_are_named(tmp_path, tokenizer):
    whole = _litertlm(tmp_path, tokenizer).read_bytes()
    cases = {
        "zip.litertlm": (b"PK\x03\x04" + whole[4:], "no LITERTLM magic"),
        "cut.litertlm": (whole[:40], "truncated .litertlm header"),
        "empty.litertlm": (b"", "no LITERTLM magic"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BundleFormatError, match=f"{name}: .*{message}"):
            read_bundle(tmp_path / name)
    with pytest.raises(BundleFormatError, match="absent.litertlm: no such file"):
        read_bundle(tmp_path / "absent.litertlm")
