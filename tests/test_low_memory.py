"""The low-memory converter (graph exported without its weights, weights streamed in) against litert-torch's own
path (every weight lowered, then ai-edge-quantizer): the same numbers, from a fraction of the memory."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, convert, export
from edge_models.convert.streaming import can_stream, export_skeleton, streamed_weights
from edge_models.kinds.decoder import load_for_spec, random_model
from edge_models.quantize.formats import format_for, pack_int4, quantize_int4_blocks
from edge_models.quantize.recipes import SCHEMES, Scheme, parse_recipe
from edge_models.runtime import LiteRTModel
from edge_models.testing import build_reference, save_reference
from helpers import read_hf_config

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32, prefill_logits=True)
PROMPT = [3, 17, 42, 7, 99, 5, 61, 12]


def _logits(path) -> np.ndarray:
    """Prefill logits for PROMPT (when the file has them), then 6 greedy decode steps: [14 or 6, vocab]."""
    lite = LiteRTModel(path)
    out = lite._run("prefill_8", np.array([PROMPT], np.int32), np.arange(8, dtype=np.int32))
    rows = [out["logits"][0]] if out else []
    token = int(rows[-1][-1].argmax()) if rows else PROMPT[-1]
    for pos in range(8, 14):
        rows.append(lite.decode(token, pos)[None])
        token = int(rows[-1][0].argmax())
    return np.concatenate(rows)


def _both(model, tmp_path, recipe: str, settings: ExportSettings = SETTINGS):
    low = convert(model, tmp_path / f"low-{recipe}.tflite", settings, recipe, progress=None).path
    full = convert(model, tmp_path / f"full-{recipe}.tflite", settings, recipe, progress=None, low_memory=False).path
    return _logits(low), _logits(full)


@pytest.mark.parametrize(
    ("name", "recipe", "prefill_logits"),
    [
        ("llama", "int8", True),
        # float16 constants behind DEQUANTIZE ops; without prefill logits the prefill graph drops the last layer's
        # tail and the head, so some weights go unused there.
        ("llama", "fp16", False),
        # Tied embedding/head in int8; int4 blocks with their float16 scale tensors; int8 weight-only + DEQUANTIZE.
        ("gemma3-270m", "attention=int4-block32,feedforward=int8-weight", True),
    ],
)
@pytest.mark.slow
def test_every_scheme_is_bit_identical_to_the_quantizer_path(name, recipe, prefill_logits, tmp_path):
    # Same graph, same stored bytes and scales (ai-edge-quantizer's arithmetic), so the same logits to the bit.
    model = random_model(registry().get(name).tiny_config, seed=1)
    settings = ExportSettings(prefill_lengths=(8,), kv_cache_len=32, prefill_logits=prefill_logits)
    low, full = _both(model, tmp_path, recipe, settings)
    assert np.array_equal(low, full), float(np.abs(low - full).max())


@pytest.mark.parametrize("name", ["phi-2"])
@pytest.mark.slow
def test_fp32_matches_the_litert_torch_path_where_folding_differs(name, tmp_path):
    # With constant weights litert-torch folds Phi-2's LayerNorm shift into the next layer's bias and Gemma 2's
    # final soft-cap divisor into the LM head; with weights as inputs those stay separate ops. Same maths, so
    # fp32 agrees to rounding (int8 then quantizes slightly different numbers, a legitimate difference).
    model = random_model(registry().get(name).tiny_config, seed=1)
    low, full = _both(model, tmp_path, "fp32")
    scale = max(1.0, float(np.abs(full).max()))
    assert np.abs(low - full).max() <= 1e-5 * scale


@pytest.mark.slow
def test_deferred_checkpoint_streams_the_same_file_as_a_loaded_model(tmp_path):
    spec = registry().get("llama")
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "ckpt")
    config = spec.config_from_hf(read_hf_config(ckpt))
    loaded = load_for_spec(spec, ckpt, config)
    deferred, read = load_for_spec(spec, ckpt, config, deferred=True)
    assert all(p.is_meta for n, p in deferred.named_parameters() if p.dim() == 2)
    a = convert(loaded, tmp_path / "a.tflite", SETTINGS, "int8", progress=None).path
    b = convert(deferred, tmp_path / "b.tflite", SETTINGS, "int8", progress=None, weights=read).path
    assert np.array_equal(_logits(a), _logits(b))
    # litert-torch's own path (as for a plugin's scheme the writer does not know) reads every weight in first.
    full = convert(deferred, tmp_path / "c.tflite", SETTINGS, "int8", progress=None, weights=read, low_memory=False)
    assert np.array_equal(_logits(full.path), _logits(a))


@pytest.mark.slow
def test_the_skeleton_holds_the_graph_but_not_the_weights(monkeypatch):
    model = random_model(registry().get("llama").tiny_config)
    shapes = streamed_weights(model)
    weight_bytes = 4 * sum(int(np.prod(s)) for s in shapes.values())
    skeleton = export_skeleton(model, SETTINGS, shapes)
    assert len(skeleton) < 0.1 * weight_bytes, (len(skeleton), weight_bytes)
    # The model's own parameters are put back after the export.
    assert all(p.shape == shapes[n] for n, p in model.named_parameters() if n in shapes)
    # Skipping litert-torch's first (redundant) decomposition pass changes no byte of the result.
    monkeypatch.setattr(export, "decomposed_once", contextlib.nullcontext)
    assert export_skeleton(model, SETTINGS, shapes) == skeleton


def test_which_recipes_stream():
    model = random_model(registry().get("llama").tiny_config)
    assert can_stream(model, parse_recipe("int8")) and can_stream(model, parse_recipe("fp32"))
    assert can_stream(model, parse_recipe("attention=fp32,default=int8"))
    assert all(can_stream(model, parse_recipe(name)) for name in SCHEMES)
    # What a plugin might register and the writer does not store: int4 per channel, weight-only int4.
    assert format_for(Scheme("int4 per channel", 4, "dynamic")) is None
    assert format_for(Scheme("weight-only int4", 4, "weight_only", 32)) is None


def test_int4_packing_and_block_scales():
    weight = np.array([[1.0, -2.0, 0.5, 7.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    q, scales = quantize_int4_blocks(weight, 2)
    assert scales.dtype == np.float16 and scales.shape == (2, 2)
    # max |w| per block over 7, rounded to bfloat16's mantissa (2/7 -> 0.28515625, so 1.0 -> 3.507 -> 4);
    # 0.5 rounds half to even; an all-zero block's 1e-9 floor underflows float16 to a zero scale, values 0.
    assert scales[0].tolist() == [0.28515625, 1.0] and scales[1].tolist() == [0.0, 0.0]
    assert q[0].tolist() == [4, -7, 0, 7] and not q[1].any()
    assert pack_int4(q).tolist() == [0x94, 0x70, 0x00, 0x00]  # first value in the low nibble


def test_safetensors_read_copy_equals_the_mapped_read(tmp_path):
    import torch
    from safetensors.torch import save_file

    from edge_models.loader import open_checkpoint

    tensors = {
        "a": torch.randn(5, 7),
        "b": torch.randn(3, 4).to(torch.bfloat16),
        "c": torch.randn(6).to(torch.float16),
        "d": torch.arange(4, dtype=torch.int64),
    }
    save_file(tensors, tmp_path / "model.safetensors")
    source = open_checkpoint(tmp_path / "model.safetensors")
    for name, tensor in tensors.items():
        got = source.read_copy(name)
        assert got.dtype == tensor.dtype and torch.equal(got, tensor), name


@pytest.mark.parametrize("name", ["gemma3-270m"])  # sliding-window and global layers
@pytest.mark.slow
def test_windowed_signatures_equal_the_full_ones(name, tmp_path):
    # step_16 / fill_8_16 read the first 16 cache slots only; while every position they write lies below 16 they
    # must give decode's / prefill_8's logits, and the runtime must switch to the full signatures past that.
    settings = ExportSettings(
        prefill_lengths=(8,), kv_cache_len=32, prefill_logits=True, decode_windows=(16,), prefill_windows=(16,)
    )
    model = random_model(registry().get(name).tiny_config, seed=2)
    path = convert(model, tmp_path / "w.tflite", settings, "fp32", progress=None).path
    lite = LiteRTModel(path)
    assert lite.info.decode_windows == {"step_16": 16} and lite.info.prefill_windows == {"fill_8_16": (8, 16)}

    def close(a, b) -> bool:
        return np.abs(a - b).max() <= 1e-5 * max(1.0, float(np.abs(b).max()))

    def both(windowed: str, full: str, tokens: list[int], pos: int):
        ids, positions = np.array([tokens], np.int32), np.arange(pos, pos + len(tokens), dtype=np.int32)
        return lite._run(windowed, ids, positions)["logits"], lite._run(full, ids, positions)["logits"]

    assert close(*both("fill_8_16", "prefill_8", PROMPT, 0))
    assert close(*both("fill_8_16", "prefill_8", PROMPT[::-1], 8))  # writes slots 8..15, the window's last
    token = 5
    for pos in range(8, 16):
        step, full = both("step_16", "decode", [token], pos)
        assert close(step, full), pos
        token = int(full.argmax())
    picked = []
    lite._run = lambda signature, tokens, positions, run=lite._run: (
        picked.append(signature) or run(signature, tokens, positions)
    )
    lite.prefill(PROMPT, 8)
    lite.prefill(PROMPT, 9)
    lite.decode(token, 15)
    lite.decode(token, 16)
    assert picked == ["fill_8_16", "prefill_8", "step_16", "decode"]


@pytest.mark.slow
def test_signatures_exported_by_two_processes_make_the_same_model(tmp_path):
    settings = ExportSettings(prefill_lengths=(8,), kv_cache_len=32, decode_windows=(16,), prefill_windows=(16,))
    model = random_model(registry().get("llama").tiny_config, seed=3)
    one = convert(model, tmp_path / "one.tflite", settings, "int8", progress=None).path
    two = convert(model, tmp_path / "two.tflite", settings, "int8", progress=None, workers=2).path
    lite_one, lite_two = LiteRTModel(one), LiteRTModel(two)
    assert sorted(lite_two.info.signatures) == sorted(lite_one.info.signatures) == sorted(settings.signature_names())
    assert np.array_equal(_logits(one), _logits(two))
    # The windowed signatures (exported by the other process) agree too.
    for lite in (lite_one, lite_two):
        lite.prefill(PROMPT)
    assert np.array_equal(lite_one.decode(5, 8), lite_two.decode(5, 8))


@pytest.mark.slow
def test_every_registered_model_can_travel_to_an_export_process():
    import pickle

    for name in registry().names():
        model = random_model(registry().get(name).tiny_config)
        clone = pickle.loads(pickle.dumps(model))
        tokens = torch.tensor([[1, 2, 3]], dtype=torch.int32)
        positions = torch.arange(3, dtype=torch.int32)
        with torch.no_grad():
            a = model(tokens, positions, model.empty_cache(8))[0]
            b = clone(tokens, positions, clone.empty_cache(8))[0]
        assert torch.equal(a, b), name
