"""Conformance: our bundles load in the LiteRT-LM engine and its greedy output equals ours token for token.

How LiteRT-LM 0.18 drives the model (read in its executor, llm_litert_compiled_model_executor.cc,
and confirmed here): the session adds the start token, `prefill` runs on all prompt tokens but the
last (zero-padded to the signature's length, input_pos zero-padded too), the last prompt token is
held back and fed to the first `decode` call, whose logits give the first generated token. Our tiny
model has no prefill logits at all, so an identical first token can only come from that decode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

litert_lm = pytest.importorskip("litert_lm", reason="litert-lm-api is not installed (pip install litert-lm-api)")

from edge_models.formats.task import read_task

from edge_models_bundler import BundleOptions, write_litertlm

pytestmark = pytest.mark.slow  # every test here converts a model or runs the LiteRT-LM engine

PROMPTS = ["kalo mine ruta", "ba"]
NEW_TOKENS = 24
OPTIONS = BundleOptions(start_token="<s>", stop_tokens=("</s>",))


def greedy(tflite: bytes, ids: list[int], stop_ids: set[int], max_tokens: int) -> list[int]:
    """The runtime's loop in miniature: prefill ids[:-1], then decode one token at a time from ids[-1]."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite)
    prefill = [s for s in it.get_signature_list() if s.startswith("prefill")]
    runner = it.get_signature_runner(prefill[0])
    decode = it.get_signature_runner("decode")
    cache = {k: np.zeros(v["shape"], np.float32) for k, v in decode.get_input_details().items() if k.startswith("kv_")}
    length = int(runner.get_input_details()["tokens"]["shape"][1])
    head = ids[:-1]
    assert len(head) <= length, "test prompts fit one prefill call"
    if head:
        tokens = np.zeros((1, length), np.int32)
        tokens[0, : len(head)] = head
        pos = np.zeros(length, np.int32)
        pos[: len(head)] = np.arange(len(head))
        out = runner(tokens=tokens, input_pos=pos, **cache)
        cache = {k: out[k] for k in cache}
    token, at, generated = ids[-1], len(ids) - 1, []
    for _ in range(max_tokens):
        out = decode(tokens=np.array([[token]], np.int32), input_pos=np.array([at], np.int32), **cache)
        cache = {k: out[k] for k in cache}
        token, at = int(np.argmax(out["logits"][0, -1])), at + 1
        if token in stop_ids:
            break
        generated.append(token)
    return generated


def engine_generate(path: Path, prompt: str, max_tokens: int) -> tuple[str, object]:
    engine = litert_lm.Engine(str(path), enable_benchmark=True)
    try:
        session = engine.create_session(
            apply_prompt_template=False, sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=max_tokens
        )
        session.run_prefill([prompt])
        text = session.run_decode().texts[0]
        info = session.get_benchmark_info()
        session.close()
        return text, info
    finally:
        engine.close()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_task_in_litert_lm_matches_our_greedy_loop(tiny_task, prompt):
    import sentencepiece as spm

    bundle = read_task(tiny_task)
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(bundle.tokenizer_model)
    ids = [sp.PieceToId(bundle.params.start_token), *sp.EncodeAsIds(prompt)]
    ours = greedy(bundle.tflite, ids, {sp.PieceToId(t) for t in bundle.params.stop_tokens}, NEW_TOKENS)
    text, info = engine_generate(tiny_task, prompt, NEW_TOKENS)
    assert ours, "the tiny model generated nothing to compare"
    assert text == sp.DecodeIds(ours)
    # The engine adds the start token itself and counts the held-back last token as prefilled.
    assert info.last_prefill_token_count == len(ids)
    if len(ours) == NEW_TOKENS:
        assert info.last_decode_token_count == NEW_TOKENS


def _runtime_matches_engine(task: Path) -> list[int]:
    from edge_models.runtime import Generator

    gen = Generator.open(task)
    assert gen.model.shortlist_size == 0, "a bundle carries our desktop runtime's shortlist signatures"
    ids = gen.encode(PROMPTS[0])
    ours = list(gen.generate_ids(ids, NEW_TOKENS, speculate=False))
    text, _ = engine_generate(task, PROMPTS[0], NEW_TOKENS)
    assert text == gen.tokenizer.decode(ours)
    return ours


def test_task_in_litert_lm_matches_the_desktop_runtime(tiny_task):
    _runtime_matches_engine(tiny_task)


def _one_spec_per_architecture() -> list[str]:
    from edge_models import registry

    chosen: dict[str, str] = {}
    for entry in registry().entries():
        chosen.setdefault(entry.spec.reference_class, entry.spec.name)
    return sorted(chosen.values())


@pytest.mark.parametrize("name", _one_spec_per_architecture())
def test_every_family_runs_in_litert_lm_like_on_the_desktop(name, tmp_path, tokenizer):
    """A .task and a .litertlm of each architecture's tiny model (sliding windows, soft-capping, parallel blocks,
    fused projections, LongRoPE...), converted with shortlist signatures, which bundles leave out (with the LM head's
    int4 copy): the engine and our runtime agree on what is left."""
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model

    from edge_models_bundler import write_bundle

    model = random_model(registry().get(name).tiny_config, seed=4)
    tflite = convert(model, tmp_path / "m.tflite", ExportSettings((8,), 64, shortlist=16), "fp32", progress=None).path
    for bundle in (tmp_path / "m.task", tmp_path / "m.litertlm"):
        report = write_bundle(bundle, tflite, tokenizer, OPTIONS)
        assert any("left out shortlist_16" in note for note in report.notes), report.notes
        assert bundle.stat().st_size < tflite.stat().st_size
        _runtime_matches_engine(bundle)


def _run_cli(*args: str):
    from click.testing import CliRunner
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    return CliRunner().invoke(cli, list(args))


def _lora_file(tmp_path: Path, rank: int, targets: tuple[str, ...]) -> tuple[Path, Path]:
    """(tiny Llama .tflite with LoRA inputs of `rank` on `targets`, where its .litertlm goes)."""
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model
    from edge_models.layers.lora import add_lora_slots

    model = random_model(registry().get("llama").tiny_config, seed=4)
    add_lora_slots(model, rank, targets)
    tflite = convert(model, tmp_path / f"lora{rank}.tflite", ExportSettings((8,), 64), "fp32", progress=None).path
    return tflite, tmp_path / f"lora{rank}.litertlm"


def test_litert_lm_binds_our_adapter_file_like_the_desktop_runtime(tmp_path, tokenizer):
    """LiteRT-LM 0.18 takes an adapter per session (`lora_path`; no bundle format has a place for one): with our
    adapter file it produces our adapted greedy text, without it the base model's."""
    from edge_models.loader.peft_adapter import write_packed
    from edge_models.runtime import Generator
    from edge_models.runtime.lora_format import LITERT_LM_TARGETS, read_adapter_file

    from edge_models_bundler import write_bundle
    from edge_models_bundler.selftest import litert_lm_greedy, record, replay

    tflite, bundle = _lora_file(tmp_path, 16, LITERT_LM_TARGETS)
    (warning,) = write_bundle(bundle, tflite, tokenizer, OPTIONS).warnings
    assert "edge-models lora zeros" in warning
    gen = Generator.open(bundle)
    rng = np.random.default_rng(0)
    adapter = {n: rng.normal(0.0, 0.5, shape).astype(np.float32) for n, shape in gen.model.lora_spec.items()}
    path = write_packed(adapter, tmp_path / "adapter.bin", "random matrices")
    ids = gen.encode(PROMPTS[0])
    base = gen.tokenizer.decode(list(gen.generate_ids(ids, NEW_TOKENS, speculate=False)))
    gen.model.set_lora(read_adapter_file(path)[0])
    adapted = gen.tokenizer.decode(list(gen.generate_ids(ids, NEW_TOKENS, speculate=False)))
    assert adapted != base, "the adapter changes nothing: the comparison below would prove nothing"
    assert litert_lm_greedy(bundle, PROMPTS[0], NEW_TOKENS, path) == adapted
    # Without an adapter LiteRT-LM leaves the LoRA inputs unset (garbage when the memory was used before): the base
    # model is the all-zero adapter, which the self-test replay binds.
    result = _run_cli("lora", "zeros", "--base", str(bundle), "-o", str(tmp_path / "zeros.bin"))
    assert result.exit_code == 0, result.output
    assert litert_lm_greedy(bundle, PROMPTS[0], NEW_TOKENS, tmp_path / "zeros.bin") == base
    write_bundle(bundle, tflite, tokenizer, OPTIONS.replace(self_test=record(bundle)))
    assert replay(bundle).passed


def test_bundler_refuses_lora_inputs_litert_lm_would_leave_at_zero(tmp_path, tokenizer):
    from edge_models_bundler import BundleError, write_bundle

    tflite, bundle = _lora_file(tmp_path, 4, ("q_proj", "up_proj"))
    with pytest.raises(BundleError, match="LoRA inputs on up_proj, which LiteRT-LM does not bind") as refused:
        write_bundle(bundle, tflite, tokenizer, OPTIONS)
    assert any(
        "rank 4: LiteRT-LM 0.18 takes adapters only on files of rank 16 or 32" in w for w in refused.value.warnings
    )
    assert not bundle.exists()


def test_litertlm_with_sentencepiece(tmp_path, tiny_tflite, tokenizer):
    import sentencepiece as spm

    out = tmp_path / "tiny.litertlm"
    write_litertlm(out, tiny_tflite, tokenizer, OPTIONS)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    ids = [sp.PieceToId("<s>"), *sp.EncodeAsIds(PROMPTS[0])]
    ours = greedy(tiny_tflite.read_bytes(), ids, {sp.PieceToId("</s>")}, NEW_TOKENS)
    text, info = engine_generate(out, PROMPTS[0], NEW_TOKENS)
    assert text == sp.DecodeIds(ours) and info.last_prefill_token_count == len(ids)


def test_litertlm_with_hf_tokenizer_json(tmp_path, tiny_tflite):
    tokenizers = pytest.importorskip("tokenizers", reason="the tokenizer.json route needs `tokenizers`")
    sys.path.insert(0, str(Path(__file__).parent))
    from spm_util import corpus

    tk = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace()
    tk.decoder = tokenizers.decoders.Metaspace()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=256, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tk.train_from_iterator(corpus(), trainer)
    assert tk.get_vocab_size() == 256
    path = tmp_path / "tokenizer.json"
    tk.save(str(path))
    out = tmp_path / "hf.litertlm"
    write_litertlm(out, tiny_tflite, path, OPTIONS)
    ids = [tk.token_to_id("<s>"), *tk.encode(PROMPTS[0], add_special_tokens=False).ids]
    ours = greedy(tiny_tflite.read_bytes(), ids, {tk.token_to_id("</s>")}, NEW_TOKENS)
    text, _ = engine_generate(out, PROMPTS[0], NEW_TOKENS)
    assert ours and text == tk.decode(ours)


def test_litertlm_validates_before_writing(tmp_path, tiny_tflite, tokenizer):
    from edge_models_bundler import BundleError

    out = tmp_path / "bad.litertlm"
    with pytest.raises(BundleError, match="stop token '<eos>' is not a single piece"):
        write_litertlm(out, tiny_tflite, tokenizer, OPTIONS.replace(stop_tokens=("<eos>",)))
    assert not out.exists() and not list(tmp_path.glob(".bad.litertlm.*"))
