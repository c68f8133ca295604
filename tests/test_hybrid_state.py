"""Layers with state beyond the KV cache (LFM2's short convolutions, Qwen3.5's gated delta-nets): PyTorch and converted
files against transformers, prompts that end inside a prefill signature's padding, state across chat turns, and the
verify signatures' state outputs (speculation itself: tests/test_speculative.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.hf.config import UnsupportedConfigError
from edge_models.kinds.decoder import load_for_spec
from edge_models.testing import build_reference, save_reference
from helpers import read_hf_config

KV = 64
PREFILLS = (8, 16)
NEW_TOKENS = 32
# Prompt lengths: 5 and 11 prefill 4 and 10 tokens, which end inside prefill_8's and prefill_16's padding.
PROMPTS = (5, 11, 17)


# Registered name -> the plugin that registers it.
FAMILIES = {"lfm2": "edge_models_lfm", "qwen3.5": "edge_models_qwen"}
PLUGINS = {**FAMILIES, "qwen3.5-image-text": "edge_models_qwen"}
_built: dict[str, tuple] = {}
_converted: dict[str, object] = {}


def _spec(name: str):
    pytest.importorskip(PLUGINS[name], reason=f"the plugin registering {name} is not installed")
    return registry().get(name)


def _build(name: str, tmp_path_factory) -> tuple:
    """(our model, transformers reference, checkpoint directory) of `name`'s tiny config, built once."""
    if name not in _built:
        spec = _spec(name)
        ref = build_reference(spec.tiny_hf_config, spec.reference_class)
        ckpt = save_reference(ref, tmp_path_factory.mktemp(name) / "ckpt")
        _built[name] = (load_for_spec(spec, ckpt, spec.config_from_hf(read_hf_config(ckpt))), ref, ckpt)
    return _built[name]


@pytest.fixture(scope="module")
def lfm2(tmp_path_factory):
    return _build("lfm2", tmp_path_factory)


@pytest.fixture(scope="module", params=list(FAMILIES))
def hybrid(request, tmp_path_factory):
    return _build(request.param, tmp_path_factory)


def _lfm2():
    return _spec("lfm2")


def _state_names(model) -> list[str]:
    return [n for layer in model.layers for n in layer.state_names]


def _prompt(n: int, seed: int = 3) -> list[int]:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed + n)).tolist()


def _reference_logits(ref, ids: list[int]) -> np.ndarray:
    """transformers' logits for every position of `ids`, from one forward pass without a cache."""
    with torch.no_grad():
        return ref(torch.tensor([ids])).logits[0].numpy()


def _padded_prefill(model, cache, ids: list[int], start: int, length: int):
    """Run `ids` at positions start.. through a `length`-token call padded as the runtimes pad (zeros)."""
    tokens = torch.zeros(1, length, dtype=torch.int64)
    tokens[0, : len(ids)] = torch.tensor(ids)
    positions = torch.zeros(length, dtype=torch.int64)
    positions[: len(ids)] = torch.arange(start, start + len(ids))
    with torch.no_grad():
        return model(tokens, positions, cache)


def test_lfm2_config_has_the_checkpoints_layers_and_parameters(lfm2):
    ours, ref, _ = lfm2
    cfg = ours.config
    assert cfg.layer_types == ("conv", "global", "conv", "global")
    assert cfg.short_conv.kernel_size == 3
    assert cfg.num_parameters() == sum(p.numel() for p in ours.parameters())
    assert cfg.num_parameters() == sum(p.numel() for p in ref.parameters())
    assert set(ours.empty_cache(KV)) == {"c_0", "k_1", "v_1", "c_2", "k_3", "v_3"}
    assert ours.empty_cache(KV)["c_0"].shape == (1, 2, cfg.hidden_size)


def test_unsupported_lfm2_settings_are_named_in_one_error():
    spec = _lfm2()
    hf = {
        **spec.tiny_hf_config,
        "layer_types": ["conv", "mamba", "full_attention", "linear_attention"],
        "block_use_swiglu": False,
        "partial_rotary_factor": 0.5,
    }
    with pytest.raises(UnsupportedConfigError) as e:
        spec.config_from_hf(hf)
    message = str(e.value)
    for fragment in ("'linear_attention'", "'mamba'", "block_use_swiglu", "partial rotary factor 0.5"):
        assert fragment in message, message
    assert "3 unsupported setting(s)" in message


def test_unsupported_qwen35_settings_are_named_in_one_error():
    spec = _spec("qwen3.5")
    hf = {
        **spec.tiny_hf_config,
        "layer_types": ["linear_attention", "conv", "mamba", "full_attention"],
        "attention_bias": True,
        "hidden_act": "gelu",
    }
    with pytest.raises(UnsupportedConfigError) as e:
        spec.config_from_hf(hf)
    message = str(e.value)
    for fragment in ("'conv'", "'mamba'", "attention_bias", "hidden_act"):
        assert fragment in message, message
    assert "3 unsupported setting(s)" in message


def test_qwen35_image_text_config_gives_its_text_decoder():
    """Qwen3.5 is published as an image-text model: its config nests the decoder in `text_config`."""
    spec = _spec("qwen3.5")
    text = {k: v for k, v in spec.tiny_hf_config.items() if k != "architectures"}
    nested = {"architectures": ["Qwen3_5ForConditionalGeneration"], "text_config": text, "vision_config": {}}
    assert spec.config_from_hf(nested) == spec.config_from_hf(spec.tiny_hf_config)
    cfg = spec.config_from_hf(nested)
    assert cfg.layer_types == ("linear", "linear", "linear", "global")
    assert cfg.rotary_dim == 8 and cfg.attention.output_gate and cfg.norm.zero_centered


def test_qwen35_image_text_checkpoint_loads_its_text_decoder(tmp_path, capsys):
    """A Qwen3_5ForConditionalGeneration checkpoint: the decoder is read from `model.language_model.*`, the vision
    tower is left out (and the loader says so), and the logits and 32 greedy tokens are transformers'."""
    spec = _spec("qwen3.5-image-text")
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    ckpt = save_reference(ref, tmp_path / "ckpt")
    ours = load_for_spec(spec, ckpt, spec.config_from_hf(read_hf_config(ckpt)))
    assert "left out: model.visual (21 tensors)" in capsys.readouterr().err
    ids = _prompt(9)
    _, cache = _padded_prefill(ours, ours.empty_cache(KV), ids[:-1], 0, 16)
    token, got, steps = ids[-1], [], []
    for pos in range(len(ids) - 1, len(ids) - 1 + NEW_TOKENS):
        with torch.no_grad():
            logits, cache = ours(torch.tensor([[token]]), torch.tensor([pos]), cache)
        steps.append(logits[0, -1].numpy())
        token = int(logits[0, -1].argmax())
        got.append(token)
    full = _reference_logits(ref, ids + got[:-1])
    assert np.abs(np.stack(steps) - full[len(ids) - 1 :]).max() <= 1e-4
    assert got == [int(t) for t in full[len(ids) - 1 :].argmax(-1)]


@pytest.mark.parametrize("n", PROMPTS)
def test_prefill_decode_and_greedy_match_transformers(n, hybrid):
    """Prefill all but the last prompt token through a padded call (the runtimes' schedule), then decode 32 greedy
    tokens: every logit within 1e-4 of transformers' and the same tokens."""
    ours, ref, _ = hybrid
    ids = _prompt(n)
    whole, _ = _padded_prefill(ours, ours.empty_cache(KV), ids, 0, len(ids))
    want = _reference_logits(ref, ids)
    assert np.abs(whole[0].numpy() - want).max() <= 1e-4
    length = next(p for p in PREFILLS if p >= n - 1)
    _, cache = _padded_prefill(ours, ours.empty_cache(KV), ids[:-1], 0, length)
    token, got, steps = ids[-1], [], []
    for pos in range(n - 1, n - 1 + NEW_TOKENS):
        with torch.no_grad():
            logits, cache = ours(torch.tensor([[token]]), torch.tensor([pos]), cache)
        steps.append(logits[0, -1].numpy())
        token = int(logits[0, -1].argmax())
        got.append(token)
    full = _reference_logits(ref, ids + got[:-1])
    assert np.abs(np.stack(steps) - full[n - 1 :]).max() <= 1e-4
    assert got == [int(t) for t in full[n - 1 :].argmax(-1)]


def test_padded_prefill_leaves_the_state_of_its_last_real_token(hybrid):
    ours, _, _ = hybrid
    ids = _prompt(6)
    _, exact = _padded_prefill(ours, ours.empty_cache(KV), ids, 0, len(ids))
    _, padded = _padded_prefill(ours, ours.empty_cache(KV), ids, 0, 16)
    # A continuation chunk (start > 0) pads with position 0 too.
    _, first = _padded_prefill(ours, ours.empty_cache(KV), ids[:2], 0, 2)
    _, chunked = _padded_prefill(ours, first, ids[2:], 2, 8)
    for name in _state_names(ours):
        # Not bit-equal: later layers' inputs come out of matmuls over 16 rows instead of 6.
        assert torch.allclose(padded[name], exact[name], atol=1e-6), name
        assert torch.allclose(chunked[name], exact[name], atol=1e-6), name


def _qwen35_prefill(tmp_path_factory, prefill: str, chunk_size: int = 64):
    """The tiny Qwen3.5 (the same weights) with its delta-nets' prefill `prefill` ("chunked" in chunks of
    `chunk_size` tokens, or "unrolled"), and transformers' model."""
    import dataclasses

    ours, ref, ckpt = _build("qwen3.5", tmp_path_factory)
    net = dataclasses.replace(ours.config.delta_net, prefill=prefill, chunk_size=chunk_size)
    return load_for_spec(_spec("qwen3.5"), ckpt, dataclasses.replace(ours.config, delta_net=net)), ref


def test_chunked_delta_net_prefill_matches_transformers_and_the_unrolled_state(tmp_path_factory):
    """Chunks of 8 over a 40-token prompt (five chunks) and over a padded call (11 real tokens of 16, the second chunk
    partly padding): logits within 1e-4 of transformers', and the state the unrolled form leaves."""
    chunked, ref = _qwen35_prefill(tmp_path_factory, "chunked", 8)
    unrolled, _ = _qwen35_prefill(tmp_path_factory, "unrolled")
    ids = _prompt(40)
    for model in (chunked, unrolled):
        got, _ = _padded_prefill(model, model.empty_cache(KV), ids, 0, len(ids))
        assert np.abs(got[0].numpy() - _reference_logits(ref, ids)).max() <= 1e-4
    _, padded = _padded_prefill(chunked, chunked.empty_cache(KV), ids[:11], 0, 16)
    _, exact = _padded_prefill(unrolled, unrolled.empty_cache(KV), ids[:11], 0, 16)
    for name in _state_names(chunked):
        assert torch.allclose(padded[name], exact[name], atol=1e-5), name


@pytest.mark.parametrize(("prefill", "chunk_size"), [("chunked", 4), ("unrolled", 64)])
@pytest.mark.slow
def test_each_delta_net_prefill_form_converts_and_matches_torch(prefill, chunk_size, tmp_path_factory, tmp_path):
    """Both forms convert to built-in ops; the file's padded prefill (6 real tokens of 8: the second chunk of 4 partly
    padding) matches PyTorch and the decode after it continues from the right state (the other hybrid file tests use
    the default, chunked in one chunk)."""
    from edge_models.runtime import LiteRTModel

    model, _ = _qwen35_prefill(tmp_path_factory, prefill, chunk_size)
    settings = ExportSettings(prefill_lengths=(8,), kv_cache_len=KV, prefill_logits=True, decode_windows=())
    lite = LiteRTModel(convert(model, tmp_path / f"{prefill}.tflite", settings, "fp32", progress=None).path)
    ids = _prompt(6)
    tokens, positions = np.zeros((1, 8), np.int32), np.zeros(8, np.int32)
    tokens[0, :6], positions[:6] = ids, np.arange(6)
    out = lite._run("prefill_8", tokens, positions)["logits"][0, :6]
    expected, cache = _padded_prefill(model, model.empty_cache(KV), ids, 0, 8)
    assert np.abs(out - expected[0, :6].numpy()).max() <= 1e-4
    with torch.no_grad():
        want, _ = model(torch.tensor([[5]]), torch.tensor([6]), cache)
    assert np.abs(lite.decode(5, 6) - want[0, -1].numpy()).max() <= 1e-4


@pytest.mark.parametrize("name", ["qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"])
def test_qwen35_presets_hold_as_many_parameters_as_transformers_model(name):
    """Each published size's config builds (on the meta device) a transformers model with exactly our decoder's
    parameter count, and a full-attention layer after every three delta-nets."""
    from transformers import AutoConfig, Qwen3_5ForCausalLM

    from edge_models.layers import Decoder

    pytest.importorskip("edge_models_qwen", reason="the Qwen plugin is not installed")
    spec = registry().get(name)
    with torch.device("meta"):
        ours = Decoder(spec.config)
        theirs = Qwen3_5ForCausalLM(AutoConfig.for_model(**spec.published_hf_config))
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    layers = spec.config.num_layers
    assert spec.config.layer_types == tuple("global" if i % 4 == 3 else "linear" for i in range(layers))


def test_lora_slots_go_on_the_projections_each_layer_has(lfm2, tmp_path):
    from edge_models.layers.lora import add_lora_slots, parse_targets

    spec = _lfm2()
    model = load_for_spec(spec, lfm2[2], lfm2[0].config)
    added = add_lora_slots(model, 2, parse_targets(None))
    assert {"layers.1.attn.q_proj", "layers.0.mlp.down_proj", "layers.0.conv.in_proj", "layers.0.conv.out_proj"} <= set(
        added
    )
    assert not any(a.startswith(("layers.0.attn", "layers.1.conv")) for a in added)


# --- converted files ---


def _fp32(name: str, model, tmp_path_factory):
    if name not in _converted:
        settings = ExportSettings(prefill_lengths=PREFILLS, kv_cache_len=KV, prefill_logits=True, decode_windows=(32,))
        path = tmp_path_factory.mktemp(f"{name}-tflite") / "fp32.tflite"
        _converted[name] = convert(model, path, settings, "fp32", progress=None).path
    return _converted[name]


@pytest.fixture(scope="module")
def lfm2_fp32(lfm2, tmp_path_factory):
    return _fp32("lfm2", lfm2[0], tmp_path_factory)


@pytest.fixture(scope="module")
def hybrid_fp32(hybrid, tmp_path_factory):
    name = next(n for n, built in _built.items() if built is hybrid)
    return _fp32(name, hybrid[0], tmp_path_factory)


@pytest.mark.slow
def test_fp32_file_carries_the_state_and_matches_torch(hybrid, hybrid_fp32):
    from edge_models.runtime import LiteRTModel

    ours, _, _ = hybrid
    lite = LiteRTModel(hybrid_fp32)
    empty = ours.empty_cache(KV)
    assert lite.info.state_inputs == {f"kv_cache_{n}": tuple(empty[n].shape) for n in _state_names(ours)}
    assert lite.has_state
    ids = _prompt(16)
    out = lite._run("prefill_16", np.array([ids], np.int32), np.arange(16, dtype=np.int32))["logits"][0]
    expected, cache = _padded_prefill(ours, ours.empty_cache(KV), ids, 0, 16)
    assert np.abs(out - expected[0].numpy()).max() <= 1e-4
    token = int(expected[0, -1].argmax())
    for pos in range(16, 40):  # through step_32 and then decode
        got = lite.decode(token, pos)
        with torch.no_grad():
            want, cache = ours(torch.tensor([[token]]), torch.tensor([pos]), cache)
        assert np.abs(got - want[0, -1].numpy()).max() <= 1e-4, f"decode at {pos}"
        token = int(want[0, -1].argmax())


@pytest.mark.slow
@pytest.mark.parametrize("n", PROMPTS)
def test_fp32_file_greedy_equals_transformers(n, hybrid, hybrid_fp32):
    from edge_models.runtime import LiteRTModel

    _, ref, _ = hybrid
    lite = LiteRTModel(hybrid_fp32)
    ids = _prompt(n)
    lite.prefill(ids[:-1])  # ends inside prefill_8's / prefill_16's padding
    token, got = ids[-1], []
    for pos in range(n - 1, n - 1 + NEW_TOKENS):
        token = int(lite.decode(token, pos).argmax())
        got.append(token)
    full = _reference_logits(ref, ids + got[:-1])
    assert got == [int(t) for t in full[n - 1 :].argmax(-1)]


# Measured on the tiny models: int8 0.9993 (LFM2) and 0.9982 (Qwen3.5), int4-block32 0.914 and 0.801.
MIN_CORRELATION = {"int8": 0.99, "int4-block32": 0.75}


class _Tokens:
    """The least of a tokenizer a Generator needs when fed ids."""

    vocab_size = 256

    def piece_to_id(self, piece: str) -> int | None:
        return {"<eos>": 255}.get(piece)


@pytest.mark.slow
def test_generator_carries_the_state_across_turns(hybrid_fp32):
    """A second turn reuses the first's cache and state when its prompt extends everything run so far; a prompt that
    shares a shorter prefix is run again from the start. Both give what a fresh run gives."""
    from edge_models.runtime import Generator, LiteRTModel
    from edge_models.runtime.sampler import SamplerConfig

    greedy = SamplerConfig(temperature=0.0)
    gen = Generator(LiteRTModel(hybrid_fp32), _Tokens(), ("<eos>",))
    fresh = Generator(LiteRTModel(hybrid_fp32), _Tokens(), ("<eos>",))
    first = _prompt(9)
    reply = list(gen.generate_ids(first, 6, greedy, speculate=False))
    assert reply and gen.cached_ids[: len(first)] == first
    run_so_far = len(gen.cached_ids)
    follow = [*gen.cached_ids, *_prompt(7, seed=11)]
    again = list(gen.generate_ids(follow, 12, greedy, cached=run_so_far, speculate=False))
    assert gen.last_stats.prefilled_tokens == len(follow) - run_so_far
    assert again == list(fresh.generate_ids(follow, 12, greedy, speculate=False))
    # Shares only the first prompt's tokens with what was run: the state is past them, so all is run again.
    branch = [*first, *_prompt(4, seed=12)]
    other = list(gen.generate_ids(branch, 12, greedy, cached=len(first), speculate=False))
    assert gen.last_stats.prefilled_tokens == len(branch)
    assert other == list(fresh.generate_ids(branch, 12, greedy, speculate=False))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["int8", "int4-block32"])
def test_quantized_files_convert_with_float_state(recipe, hybrid, tmp_path):
    from edge_models.runtime import LiteRTModel

    ours, _, _ = hybrid
    settings = ExportSettings(prefill_lengths=PREFILLS, kv_cache_len=KV, prefill_logits=True)
    result = convert(ours, tmp_path / f"{recipe}.tflite", settings, recipe, progress=None)
    lite = LiteRTModel(result.path)
    empty = ours.empty_cache(KV)
    assert lite.info.state_inputs == {f"kv_cache_{n}": tuple(empty[n].shape) for n in _state_names(ours)}
    assert all(empty[n].dtype == torch.float32 for n in _state_names(ours))
    ids = _prompt(16)
    out = lite._run("prefill_16", np.array([ids], np.int32), np.arange(16, dtype=np.int32))["logits"][0]
    expected, _ = _padded_prefill(ours, ours.empty_cache(KV), ids, 0, 16)
    # Random weights leave near-ties everywhere, so top-1 agreement says little; the logits' correlation with the
    # fp32 model's says whether the quantized file computes the same function.
    want = expected[0].numpy()
    correlation = float(np.corrcoef(out.reshape(-1), want.reshape(-1))[0, 1])
    agreement = float((out.argmax(-1) == want.argmax(-1)).mean())
    print(f"{recipe}: {result.size_bytes} bytes, logit correlation {correlation:.4f}, top-1 agreement {agreement:.3f}")
    assert np.isfinite(out).all() and correlation >= MIN_CORRELATION[recipe]


# --- LiteRT-LM ---


def _sentencepiece(path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    sp.Load(str(path))
    return sp


# A ChatML template like LFM2's (the engine runs without applying it; it is in the bundle for the model type's sake).
CHATML = (
    "{{- bos_token -}}{%- for m in messages -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
ENGINE_PROMPTS = [
    "kalo mine ruta",
    "so vi",
    "ka lo mi ne ru",
    "mine kalo ta so vi pe du ba zo",
    "vi pe du ba zo xe fi gu ha jo ka lo",
]


@pytest.mark.slow
def test_litertlm_bundle_runs_in_litert_lm_with_our_greedy_text(hybrid, hybrid_fp32, tmp_path):
    """LiteRT-LM binds `kv_cache_c_*` in place beside the KV caches: its greedy text equals our runtime's (which
    equals transformers', above), for prompts whose prefill ends inside prefill_8's or prefill_16's padding."""
    litert_lm = pytest.importorskip("litert_lm", reason="litert-lm-api is not installed")
    pytest.importorskip("edge_models_bundler", reason="the bundler plugin is not installed")
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    from edge_models.hf.chat_template import ChatTemplate
    from edge_models.runtime import Generator
    from edge_models.testing import train_sentencepiece
    from edge_models_bundler import write_bundle
    from edge_models_bundler.litertlm import _metadata
    from edge_models_bundler.options import resolve_options

    tokenizer = train_sentencepiece(tmp_path / "tokenizer.model", 256)
    bundle = tmp_path / "model.litertlm"
    # As `edge-models bundle --model NAME` writes it: LiteRT-LM's lfm2 model type for LFM2 (which LiteRT-LM accepts only
    # with a Jinja template, as real checkpoints carry: without one the bundle stays generic), generic for Qwen3.5
    # (0.18.1 has no Qwen3.5 type).
    name = next(n for n, built in _built.items() if built is hybrid)
    expected = {"lfm2": "lfm2"}.get(name, "generic_model")
    assert resolve_options(name, start_token="<s>", stop_tokens=("</s>",)).litertlm_model_type == "generic_model"
    jinja = ChatTemplate(CHATML, "test", {"bos_token": "<s>", "eos_token": "</s>"})
    options = resolve_options(name, start_token="<s>", stop_tokens=("</s>",), chat_template=jinja)
    meta = llm_metadata_pb2.LlmMetadata.FromString(_metadata(options, _sentencepiece(tokenizer), KV))
    assert meta.llm_model_type.WhichOneof("model_type") == expected
    write_bundle(bundle, hybrid_fp32, tokenizer, options)
    gen = Generator.open(bundle)
    assert gen.model.has_state
    compared = []
    for prompt in ENGINE_PROMPTS:
        ids = gen.encode(prompt)
        assert len(ids) - 1 not in PREFILLS, "the prefill ends inside a signature's padding"
        ours = gen.tokenizer.decode(list(gen.generate_ids(ids, 24, speculate=False)))
        engine = litert_lm.Engine(str(bundle))
        try:
            session = engine.create_session(
                apply_prompt_template=False, sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=24
            )
            session.run_prefill([prompt])
            text = session.run_decode().texts[0]
            session.close()
        finally:
            engine.close()
        print(f"{prompt!r}: {len(ids)} prompt tokens -> {ours!r}")
        assert text == ours, prompt
        compared.append(ours)
    assert sum(len(text) >= 8 for text in compared) >= 3, f"too little text to compare: {compared}"


@pytest.mark.slow
def test_convert_command_keeps_verify_signatures_with_the_state_after_each_token(run, tmp_path):
    """The command adds verify_8 by default, for a model with state too: its verify signature outputs each state
    entry after every one of its 8 tokens (tests/test_speculative.py runs speculation on it)."""
    from edge_models.tflite.checks import STATE_STEPS_PREFIX, check_tflite, open_interpreter

    _spec("lfm2")
    out = tmp_path / "lfm2.tflite"
    result = run(
        "convert", "lfm2", "--tiny", "-o", out, "--quantize", "int8", "--prefill", "8", "--kv-cache", "64",
        "--shortlist", "0", "--jobs", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    info = check_tflite(out)
    assert set(info.verify) == {"verify_8"} and set(info.state_inputs) == {"kv_cache_c_0", "kv_cache_c_2"}
    outputs = open_interpreter(out).get_signature_runner("verify_8").get_output_details()
    for name, shape in info.state_inputs.items():
        steps = outputs[name.replace("kv_cache_", STATE_STEPS_PREFIX)]
        assert list(steps["shape"]) == [8, *shape[1:]] and steps["dtype"] == np.float32
