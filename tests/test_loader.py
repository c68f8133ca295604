"""Checkpoint formats and the loader's errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from edge_models import registry
from edge_models.kinds.decoder_verify import compare
from edge_models.loader import CheckpointError, load_model, open_checkpoint
from edge_models.tensor_names import GGUF_NAMES
from edge_models.testing import build_reference, save_reference


def _ids(n=12, vocab=256):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(3)).tolist()


def _assert_matches(ours, ref):
    result = compare(ours, ref, _ids(), 8, atol=1e-4)
    assert result.max_abs_diff <= 1e-4 and result.greedy_match == 8, result


def test_sharded_safetensors(tiny_llama, tmp_path):
    ref, _, spec = tiny_llama
    ckpt = save_reference(ref, tmp_path / "sharded", max_shard_size="100KB")
    assert (ckpt / "model.safetensors.index.json").exists()
    assert len(list(ckpt.glob("*.safetensors"))) > 1
    _assert_matches(load_model(spec.tiny_config, ckpt, spec.tensor_names), ref)


def test_bin_checkpoint(tiny_llama, tmp_path):
    ref, _, spec = tiny_llama
    path = tmp_path / "pytorch_model.bin"
    torch.save(ref.state_dict(), path)
    _assert_matches(load_model(spec.tiny_config, path, spec.tensor_names), ref)


def test_bf16_checkpoint_loads_into_fp32(tiny_llama, tmp_path):
    ref, _, spec = tiny_llama
    path = tmp_path / "model.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in ref.state_dict().items()}, path)
    model = load_model(spec.tiny_config, path, spec.tensor_names)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def _llamacpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    # llama.cpp's converter interleaves the two rotary halves of each head.
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _write_gguf(path, arch: str, tensors: dict[str, torch.Tensor], heads: int, kv_heads: int, layers: int):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    for name, t in tensors.items():
        writer.add_tensor(name, t.detach().float().numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _to_gguf_names(state: dict, spec) -> dict:
    hf, gg = spec.tensor_names, GGUF_NAMES
    out = {}
    for field in ("embedding", "final_norm", "lm_head"):
        if getattr(hf, field) and f"{getattr(hf, field)}.weight" in state:
            out[f"{getattr(gg, field)}.weight"] = state[f"{getattr(hf, field)}.weight"]
    for i in range(spec.tiny_config.num_layers):
        for field in (
            "input_norm",
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "q_norm",
            "k_norm",
            "pre_mlp_norm",
            "post_attn_norm",
            "post_mlp_norm",
            "gate_proj",
            "up_proj",
            "down_proj",
        ):
            src = getattr(hf, field)
            if src and f"{src.format(i)}.weight" in state:
                out[f"{getattr(gg, field).format(i)}.weight"] = state[f"{src.format(i)}.weight"]
    return out


def test_gguf_llama_undoes_qk_permutation(tiny_llama, tmp_path):
    ref, _, spec = tiny_llama
    cfg = spec.tiny_config
    a = cfg.attention
    tensors = _to_gguf_names(ref.state_dict(), spec)
    for i in range(cfg.num_layers):
        tensors[f"blk.{i}.attn_q.weight"] = _llamacpp_permute(tensors[f"blk.{i}.attn_q.weight"], a.num_heads)
        tensors[f"blk.{i}.attn_k.weight"] = _llamacpp_permute(tensors[f"blk.{i}.attn_k.weight"], a.num_kv_heads)
    path = tmp_path / "tiny.gguf"
    _write_gguf(path, "llama", tensors, a.num_heads, a.num_kv_heads, cfg.num_layers)
    _assert_matches(load_model(cfg, path, GGUF_NAMES), ref)


def test_gguf_gemma3_undoes_norm_offset(tmp_path):
    spec = registry().get("gemma3-270m")
    cfg = spec.tiny_config
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    tensors = _to_gguf_names(ref.state_dict(), spec)
    for name in tensors:
        if name.endswith("norm.weight"):
            tensors[name] = tensors[name] + 1.0  # llama.cpp stores Gemma norms as 1 + w
    path = tmp_path / "tiny-gemma3.gguf"
    _write_gguf(path, "gemma3", tensors, cfg.attention.num_heads, cfg.attention.num_kv_heads, cfg.num_layers)
    _assert_matches(load_model(cfg, path, GGUF_NAMES), ref)


# --- errors ---------------------------------------------------------------------------------


def _resave(ckpt, edit):
    path = ckpt / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)
    return path


def test_missing_unexpected_and_misshapen_tensors_in_one_error(tiny_llama):
    _, ckpt, spec = tiny_llama

    def edit(state):
        del state["model.layers.1.mlp.up_proj.weight"]
        state["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(3, 128)
        state["model.extra.weight"] = torch.zeros(2)

    path = _resave(ckpt, edit)
    with pytest.raises(CheckpointError) as err:
        load_model(spec.tiny_config, path, spec.tensor_names)
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "missing tensor 'model.layers.1.mlp.up_proj.weight'" in msg and "[256, 128]" in msg
    assert "'model.layers.0.self_attn.k_proj.weight': expected [64, 128], found [3, 128]" in msg
    assert "unexpected tensor 'model.extra.weight'" in msg


def test_truncated_safetensors_names_the_file(tiny_llama):
    _, ckpt, spec = tiny_llama
    path = ckpt / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        load_model(spec.tiny_config, path, spec.tensor_names)


def test_garbage_safetensors_header(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        open_checkpoint(path)


def test_corrupt_bin_names_the_file(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"definitely not a pickle")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: cannot be read"):
        open_checkpoint(path)


def test_corrupt_gguf_names_the_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    with pytest.raises(CheckpointError, match="model.gguf: not a readable GGUF"):
        open_checkpoint(path)


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        open_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format '.onnx'"):
        open_checkpoint(tmp_path / "weights.onnx")
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        open_checkpoint(tmp_path)


def test_missing_shard_is_named(tiny_llama, tmp_path):
    ref, _, spec = tiny_llama
    ckpt = save_reference(ref, tmp_path / "sharded", max_shard_size="100KB")
    victim = sorted(ckpt.glob("*.safetensors"))[0]
    victim.unlink()
    with pytest.raises(CheckpointError, match=f"missing: .*{victim.name}"):
        open_checkpoint(ckpt)


def test_fused_qkv_checkpoint(tiny_llama, tmp_path):
    """Checkpoints that stack q, k and v in one tensor (Phi-3 style, GGUF attn_qkv) load through `qkv_proj`."""
    import dataclasses

    ref, ckpt, spec = tiny_llama
    state = load_file(ckpt / "model.safetensors")
    for i in range(spec.tiny_config.num_layers):
        parts = [state.pop(f"model.layers.{i}.self_attn.{p}_proj.weight") for p in "qkv"]
        state[f"model.layers.{i}.self_attn.qkv_proj.weight"] = torch.cat(parts)
    path = tmp_path / "fused.safetensors"
    save_file(state, path)
    names = dataclasses.replace(
        spec.tensor_names, q_proj=None, k_proj=None, v_proj=None, qkv_proj="model.layers.{}.self_attn.qkv_proj"
    )
    _assert_matches(load_model(spec.tiny_config, path, names), ref)
    state["model.layers.0.self_attn.qkv_proj.weight"] = state["model.layers.0.self_attn.qkv_proj.weight"][:-1]
    save_file(state, path)
    with pytest.raises(
        CheckpointError,
        match=r"1 problem\(s\)\):\n.*qkv_proj.weight': expected \[256, 128\] \(fused projections stacked\), "
        r"found \[255, 128\]$",
    ):
        load_model(spec.tiny_config, path, names)


@pytest.mark.slow
def test_verify_passes_a_model_whose_reference_stops_at_its_eos(tmp_path):
    """transformers' generate() stops at the checkpoint's EOS token: the greedy comparison ends there too, the
    table says so, and a correct model passes (the logits are still compared over every token we decoded)."""
    from edge_models.kinds.decoder_verify import reference_greedy, verify_checkpoint

    spec = registry().get("mistral")
    # verify's first input without prompts: 8 fixed pseudo-random ids.
    ids = torch.randint(0, 256, (8,), generator=torch.Generator().manual_seed(0)).tolist()
    plain = reference_greedy(build_reference(spec.tiny_hf_config, spec.reference_class), ids, 32)
    # An EOS the reference emits a few tokens in (and not before).
    at = next(i for i in range(3, 32) if plain[i] not in plain[:i])
    ref = build_reference({**spec.tiny_hf_config, "eos_token_id": plain[at]}, spec.reference_class)
    assert len(reference_greedy(ref, ids, 32)) == at + 1
    report = verify_checkpoint("auto", save_reference(ref, tmp_path / "ck"), new_tokens=32)
    row = report.rows[0]
    assert report.passed and row.reference_stopped and row.greedy_total < 32, report.table()
    assert "stopped at its end-of-sequence token" in report.table()
    # Unchanged where the reference runs the full length (no EOS token at all).
    plain = build_reference({**spec.tiny_hf_config, "eos_token_id": None}, spec.reference_class)
    plain_checkpoint = save_reference(plain, tmp_path / "plain")
    plain_report = verify_checkpoint("auto", plain_checkpoint)
    assert all(r.greedy_total == 32 and not r.reference_stopped for r in plain_report.rows)
    assert "end-of-sequence" not in plain_report.table()
