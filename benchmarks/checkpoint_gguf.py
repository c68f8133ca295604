"""A Hugging Face checkpoint (Llama or Qwen2 layout, safetensors) as a GGUF for llama.cpp's own tools.

    python benchmarks/checkpoint_gguf.py CHECKPOINT_DIR OUT.gguf [--type f16|f32]

For speed rows beside ours on the same weights (`benchmarks/README.md`, #27): the random-weight 1.5B/8B
checkpoints that `benchmarks/bench_convert.py` writes have no tokenizer, so the file gets a placeholder
SentencePiece-style vocabulary of the model's size (as `bench_speed.write_gguf` does); `llama-bench` needs no
more. Tensors stream one at a time from the mapped safetensors into the file, so an 8B checkpoint needs about
one tensor of memory, not the model. Names come from gguf's own map of Hugging Face names (the names llama.cpp
loads); q/k of the Llama architecture get llama.cpp's rotary interleave (Qwen2 rotates NeoX-style: left as is).
Llama 3's rope-scaling table (`rope_freqs`) is not written: it changes no speed.

Then `llama-quantize OUT.gguf OUT-q4_0.gguf Q4_0` and `llama-bench -m OUT-q4_0.gguf -t 2 -p 0 -n 64 --repack 0`
(build: benchmarks/llama_cpp.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


def _interleave_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    # HF keeps each head's rotary halves apart (rotate_half); llama.cpp's llama rotation pairs neighbours.
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(folder: Path) -> dict[str, Path]:
    """Each tensor's name and the safetensors file that holds it."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return {name: folder / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    single = folder / "model.safetensors"
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def _placeholder_vocabulary(writer, vocab_size: int) -> None:
    import gguf

    specials = ["<unk>", "<s>", "</s>"]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"tok{i}" for i in range(vocab_size - len(tokens))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab_size - len(types) - 256)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * vocab_size)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)


def write_checkpoint_gguf(folder: str | Path, out: str | Path, kind: str = "f16") -> int:
    """Write the checkpoint in `folder` to `out` (F16 or F32 weights; norms and biases F32); return its bytes."""
    import gguf
    import torch
    from safetensors import safe_open

    folder, out = Path(folder), Path(out)
    config = json.loads((folder / "config.json").read_text())
    arch_name = ARCHITECTURES.get((config.get("architectures") or ["?"])[0])
    if arch_name is None:
        raise SystemExit(f"{folder}: architecture {config.get('architectures')} is not one of {list(ARCHITECTURES)}")
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    layers, heads, kv_heads = config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope_theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    names = gguf.get_tensor_name_map(arch, layers)
    dtype = np.float16 if kind == "f16" else np.float32

    writer = gguf.GGUFWriter(str(out) + ".part", arch_name)
    writer.add_context_length(min(config.get("max_position_embeddings", 4096), 131072))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.ALL_F32)
    _placeholder_vocabulary(writer, config["vocab_size"])

    plan = []  # (gguf name, hf name, file, numpy dtype)
    for hf_name, file in _tensors(folder).items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            if "rotary_emb" in hf_name:
                continue
            raise SystemExit(f"{folder}: no GGUF name for tensor {hf_name}")
        with safe_open(file, framework="pt") as f:
            shape = f.get_slice(hf_name).get_shape()
        # llama.cpp reads norms and biases (1-D) only as F32.
        plan.append((name, hf_name, file, dtype if len(shape) > 1 else np.float32, shape))
    for name, _, _, dt, shape in plan:
        writer.add_tensor_info(name, shape, np.dtype(dt), int(np.prod(shape)) * np.dtype(dt).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, hf_name, file, dt, _ in plan:
        with safe_open(file, framework="pt") as f:
            tensor = f.get_tensor(hf_name).to(torch.float32).numpy()
        if arch_name == "llama" and name.endswith("attn_q.weight"):
            tensor = _interleave_rotary(tensor, heads)
        elif arch_name == "llama" and name.endswith("attn_k.weight"):
            tensor = _interleave_rotary(tensor, kv_heads)
        writer.write_tensor_data(np.ascontiguousarray(tensor, dtype=dt))
    writer.close()
    Path(str(out) + ".part").rename(out)
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--type", choices=["f16", "f32"], default="f16")
    args = parser.parse_args()
    size = write_checkpoint_gguf(args.checkpoint, args.out, args.type)
    print(f"{args.out}: {size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
