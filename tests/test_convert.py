"""Converted .tflite files against the PyTorch model and transformers, for every family and recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, all_schemes, convert, parse_recipe
from edge_models.kinds.decoder import load_for_spec
from edge_models.kinds.decoder_verify import reference_greedy
from edge_models.runtime import LiteRTModel
from edge_models.testing import build_reference, save_reference
from helpers import read_hf_config
from helpers.families import CONVERTED_CASES as CASES
from helpers.families import VARIANTS
from helpers.trained import markov_text, trained_tiny_model

KV = 64
SETTINGS = ExportSettings(prefill_lengths=(8, 16), kv_cache_len=KV, prefill_logits=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Per family: (our torch model, transformers reference, fp32 tflite path); converted once."""
    out = {}
    root = tmp_path_factory.mktemp("families")

    def get(name, label="", overrides=None):
        key = f"{name}-{label}" if label else name
        if key not in out:
            spec = registry().get(name)
            ref = build_reference({**spec.tiny_hf_config, **(overrides or {})}, spec.reference_class)
            ckpt = save_reference(ref, root / key)
            ours = load_for_spec(spec, ckpt, spec.config_from_hf(read_hf_config(ckpt)))
            path = convert(ours, root / f"{key}.tflite", SETTINGS, "fp32", progress=None).path
            out[key] = (ours, ref, path)
        return out[key]

    return get


def _torch_logits(model, ids, start=0, cache=None):
    cache = cache if cache is not None else model.empty_cache(KV)
    with torch.no_grad():
        logits, cache = model(torch.tensor([ids]), torch.arange(start, start + len(ids)), cache)
    return logits[0].numpy(), cache


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_fp32_tflite_matches_torch(name, converted):
    ours, _, path = converted(name)
    lite = LiteRTModel(path)
    ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(5)).tolist()
    # Prefill signature with logits: all 16 positions.
    out = lite._run("prefill_16", np.array([ids], np.int32), np.arange(16, dtype=np.int32))
    expected, cache = _torch_logits(ours, ids)
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(out["logits"][0] - expected).max() <= 1e-4 * scale
    # Then 8 decode steps through both caches.
    token = int(expected[-1].argmax())
    for pos in range(16, 24):
        got = lite.decode(token, pos)
        want, cache = _torch_logits(ours, [token], pos, cache)
        assert np.abs(got - want[0]).max() <= 1e-4 * scale, f"decode step at {pos}"
        token = int(want[0].argmax())


@pytest.mark.parametrize(
    "name,label,overrides", [(n, "", None) for n in CASES] + VARIANTS, ids=CASES + [f"{v[0]}-{v[1]}" for v in VARIANTS]
)
@pytest.mark.slow
def test_tflite_greedy_equals_transformers_generate(name, label, overrides, converted):
    _, ref, path = converted(name, label, overrides)
    lite = LiteRTModel(path)
    ids = torch.randint(0, 256, (11,), generator=torch.Generator().manual_seed(7)).tolist()
    # The runtime's own schedule: prefill all but the last prompt token, decode from it.
    lite.prefill(ids[:-1])
    token, got = ids[-1], []
    for pos in range(len(ids) - 1, len(ids) + 15):
        token = int(lite.decode(token, pos).argmax())
        got.append(token)
    assert got == reference_greedy(ref, ids, 16)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_debug_finds_every_block_through_decode(name, converted):
    """A prompt longer than every prefill signature goes through `decode` one token at a time, the path `debug`
    takes on files whose prefill signatures dropped their last block: every block found, each equal to torch."""
    from edge_models.tools.debug import compare_blocks, format_report

    ours, _, path = converted(name)
    ids = torch.randint(0, 256, (20,), generator=torch.Generator().manual_seed(9)).tolist()
    rows = compare_blocks(path, ours, ids)
    assert [r.block for r in rows] == [*range(ours.config.num_layers), -1]
    assert all(r.relative < 1e-4 and r.cosine > 0.9999 for r in rows), format_report(rows)


# --- recipes --------------------------------------------------------------------------------

RECIPES = [*all_schemes(), "attention=int4-block32,feedforward=int4-block128,default=int8"]
# Teacher-forced positions compared with fp32: prefill_64 over a fixed held-out text of the
# chain the model was trained on. Measured: fp32 1.0, fp16 1.0, int8-weight/int8 >= 0.98,
# int4-block32 and int4-block128 >= 0.95 (see the printed figures with -s).
TEXT = markov_text(64, 256, seed=10_000)
MIN_TOP1 = {"fp32": 1.0, "fp16": 0.97}


@pytest.fixture(scope="module")
def recipe_model(tmp_path_factory):
    spec = registry().get("llama")
    return trained_tiny_model(spec.tiny_config), tmp_path_factory.mktemp("recipes")


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.slow
def test_every_recipe_converts_and_agrees_with_fp32(recipe, recipe_model):
    model, root = recipe_model
    settings = ExportSettings(prefill_lengths=(64,), kv_cache_len=128, prefill_logits=True)
    # Calibrated schemes see text of the same kind as the test's (other seeds), never the test text itself.
    calibration = [markov_text(64, 256, seed=20_000 + k) for k in range(4)]
    path = root / f"{recipe.replace('=', '-').replace(',', '_')}.tflite"
    result = convert(model, path, settings, recipe, progress=None, calibration=calibration)
    lite = LiteRTModel(result.path)
    out = lite._run("prefill_64", np.array([TEXT], np.int32), np.arange(64, dtype=np.int32))["logits"][0]
    expected, _ = _torch_logits(model, TEXT, cache=model.empty_cache(128))
    agreement = float((out.argmax(-1) == expected.argmax(-1)).mean())
    print(f"{recipe}: top-1 agreement with fp32 torch {agreement:.3f}, {result.size_bytes} bytes")
    assert agreement >= MIN_TOP1.get(recipe, 0.9), f"{recipe}: top-1 agreement {agreement:.3f}"
    if recipe != "fp32":
        fp32_size = sum(p.numel() for p in model.parameters()) * 4
        assert result.size_bytes < fp32_size, "quantized file is not smaller than the fp32 weights"


@pytest.mark.slow
def test_recipe_components_match_converted_tensor_names(converted):
    """Each component's regex must hit op outputs in a real file, or its recipe is silently a no-op."""
    import re

    from ai_edge_litert.interpreter import Interpreter

    from edge_models.quantize import COMPONENTS

    for name in CASES:
        _, _, path = converted(name)
        it = Interpreter(str(path))
        tensors = it.get_tensor_details()
        # ai-edge-quantizer matches op *output* names; prefill_16 has every op (it returns logits).
        names = [tensors[i]["name"] for op in it._get_ops_details() for i in op["outputs"]]
        for component, pattern in COMPONENTS.items():
            assert any(re.search(pattern, n) for n in names), f"{component} ({pattern}) matches nothing in {name}"


def test_block_size_that_does_not_divide_is_refused_before_converting(tmp_path):
    from edge_models.convert import RecipeError
    from edge_models.kinds.decoder import random_model

    config = registry().get("llama").tiny_config.replace(hidden_size=96)
    model = random_model(config)
    with pytest.raises(RecipeError, match=r"block size does not divide .*input dimension 96"):
        convert(model, tmp_path / "x.tflite", SETTINGS, "int4-block128", progress=None)
    with pytest.raises(RecipeError, match=r"lm_head \(input dimension 96\)"):
        convert(model, tmp_path / "x.tflite", SETTINGS, "lm_head=int4-block128,default=int8", progress=None)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_tied_embedding_needs_one_scheme_and_mixed_recipes_shrink_it(tmp_path):
    from edge_models.convert import RecipeError
    from edge_models.kinds.decoder import random_model

    model = random_model(registry().get("gemma3-270m").tiny_config)  # tied embeddings
    with pytest.raises(RecipeError, match=r"ties its embedding and LM head .*embedding=int8, lm_head=fp32.*two quant"):
        convert(model, tmp_path / "x.tflite", SETTINGS, "embedding=int8,lm_head=fp32", progress=None)
    assert not list(tmp_path.iterdir())
    int8 = convert(model, tmp_path / "int8.tflite", SETTINGS, "int8", progress=None).size_bytes
    # int4 feed-forward, the rest (by default) int8: must come out smaller than all-int8, not bigger.
    size = convert(model, tmp_path / "mixed.tflite", SETTINGS, "feedforward=int4-block32", progress=None).size_bytes
    assert size < int8, (size, int8)


@pytest.mark.slow
def test_tied_matrix_in_two_quantized_schemes_is_stored_twice(tmp_path):
    """An int8 lookup (one row read per token) and an int4 head (read whole every token): the tied matrix is untied
    for the conversion, written once per scheme, and the model is tied again afterwards."""
    from edge_models.kinds.decoder import random_model
    from edge_models.runtime import LiteRTModel

    model = random_model(registry().get("gemma3-270m").tiny_config)
    ids = [3, 17, 42, 7, 99]
    with torch.no_grad():
        reference, _ = model(torch.tensor([ids]), torch.arange(len(ids)), model.empty_cache(KV))
    sizes = {}
    for recipe in ("int8", "int4-block32", "embedding=int8,lm_head=int4-block32"):
        result = convert(model, tmp_path / f"{len(sizes)}.tflite", SETTINGS, recipe, progress=None)
        sizes[recipe] = result.size_bytes
        assert (
            model.lm_head.tied
            and model.config.tie_embeddings
            and "lm_head.weight" not in dict(model.named_parameters())
        )
    both = tmp_path / "2.tflite"
    assert sizes["embedding=int8,lm_head=int4-block32"] > sizes["int4-block32"]
    lite = LiteRTModel(both)
    lite.prefill(ids[:-1], 0)
    logits = lite.decode(ids[-1], len(ids) - 1)
    cosine = (
        np.dot(logits, reference[0, -1].numpy()) / np.linalg.norm(logits) / np.linalg.norm(reference[0, -1].numpy())
    )
    assert cosine > 0.98, cosine


@pytest.mark.slow
def test_lead_rows_of_a_tied_matrix_in_their_own_scheme(tmp_path):
    """rows.K: the first K rows of the tied embedding/LM head stored as a matrix of their own (int8) beside the
    rest (int4); lookup and head compute what the whole matrix does, the model is whole again afterwards, and the
    file sits between all-int4 and all-int8 in size and fidelity."""
    from edge_models.kinds.decoder import random_model
    from edge_models.layers.decoder import LMHead
    from edge_models.runtime import LiteRTModel

    # A vocabulary large enough for the matrix, not the graph, to decide the file sizes.
    model = random_model(registry().get("gemma3-270m").tiny_config.replace(vocab_size=4096), seed=3)
    settings = ExportSettings(prefill_lengths=(8,), kv_cache_len=64, prefill_logits=True)
    ids = [3, 17, 42, 700, 99, 1500, 2000, 4000]  # ids on both sides of the split
    with torch.no_grad():
        reference = model(torch.tensor([ids]), torch.arange(8), model.empty_cache(64))[0][0].numpy()
    calibration = [markov_text(64, 256, seed=20_000 + k) for k in range(4)]
    found = {}
    for recipe in (
        "int8,embedding=int4-block32,lm_head=int4-block32",
        "int8-gptq,embedding=int4-block32-gptq,lm_head=int4-block32-gptq,rows.1024=int8-gptq",
        "int8",
    ):
        result = convert(model, tmp_path / "m.tflite", settings, recipe, progress=None, calibration=calibration)
        logits = LiteRTModel(result.path)._run("prefill_8", np.array([ids], np.int32), np.arange(8, dtype=np.int32))
        out = logits["logits"][0]
        cosine = (out * reference).sum(-1) / np.linalg.norm(out, axis=-1) / np.linalg.norm(reference, axis=-1)
        found[recipe] = (result.size_bytes, float(cosine.min()))
        assert isinstance(model.embed_tokens, torch.nn.Embedding) and isinstance(model.lm_head, LMHead)
    (int4_size, int4_cos), (split_size, split_cos), (int8_size, int8_cos) = found.values()
    assert int4_size < split_size < int8_size, found
    assert int4_cos < split_cos < int8_cos, found


def test_lead_rows_recipe_errors(tmp_path):
    from edge_models.convert import RecipeError
    from edge_models.kinds.decoder import random_model

    with pytest.raises(RecipeError, match="more than one rows.K part"):
        parse_recipe("rows.8=int8,rows.16=int8")
    untied = random_model(registry().get("llama").tiny_config)
    with pytest.raises(RecipeError, match="rows.K splits a tied embedding/LM head; this model's are untied"):
        convert(untied, tmp_path / "x.tflite", SETTINGS, "int4-block32,rows.64=int8", progress=None)
    tied = random_model(registry().get("gemma3-270m").tiny_config)
    with pytest.raises(RecipeError, match="rows.256 must leave rows on both sides of a 256-token vocabulary"):
        convert(tied, tmp_path / "x.tflite", SETTINGS, "int4-block32,rows.256=int8", progress=None)
    assert not list(tmp_path.iterdir())


# --- windowed signatures by default -------------------------------------------------------------


@pytest.mark.parametrize(
    "name,recipe,pays",
    [
        ("gemma3-270m", "int8-gptq", True),  # fp32 cache 36 MiB, 13 % of the int8 bytes a step reads
        ("qwen2.5-0.5b", "int4-block32", True),
        ("qwen2.5-0.5b", "int8-gptq", False),
        ("qwen2.5-1.5b", "int8-gptq", False),  # 4 %: step_256 measured no faster than decode
        ("qwen2.5-1.5b", "int4-block32", False),
    ],
)
def test_windows_are_added_where_the_cache_is_a_real_share_of_a_step(name, recipe, pays):
    from edge_models.convert.export import DEFAULT_WINDOW, windows_pay
    from edge_models.layers import Decoder

    with torch.device("meta"):  # the preset's shapes, no memory
        net = Decoder(registry().get(name).config)
    assert windows_pay(net, 1024, parse_recipe(recipe)) is pays
    settled = ExportSettings(decode_windows=None, prefill_windows=None).with_windows_where_they_pay(
        net, parse_recipe(recipe)
    )
    expected = (DEFAULT_WINDOW,) if pays else ()
    assert (settled.decode_windows, settled.prefill_windows) == (expected, expected)
    assert any(n.startswith("step_") for n in settled.signature_names()) is pays
    # Windows given explicitly are kept whatever the rule says.
    assert ExportSettings(decode_windows=(128,)).with_windows_where_they_pay(
        net, parse_recipe(recipe)
    ).decode_windows == (128,)


def test_unsettled_windows_are_refused_before_export():
    with pytest.raises(ValueError, match="with_windows_where_they_pay"):
        ExportSettings(decode_windows=None).signatures()
