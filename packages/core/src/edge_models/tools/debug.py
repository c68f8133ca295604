"""Per-block numerical debugging: how far a converted file's hidden state is from the PyTorch model's, block by block.

The file runs a prefill signature (or `decode`, token by token) through LiteRT's interpreter with every
intermediate tensor kept; each decoder block's output is the last tensor the converter named after that block
(litert-torch names op outputs by module path, `.../DecoderBlock_<i>;...`). The PyTorch model runs the same tokens
and hooks give its blocks' outputs. A recipe that loses quality shows where: the relative error grows smoothly
through the blocks, and jumps at one that is broken or too coarsely quantized.
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_BLOCK = re.compile(r"DecoderBlock_(\d+)(;\d*)?$")


@dataclass(frozen=True)
class BlockError:
    block: int  # -1 for the logits
    relative: float  # ||file - torch|| / ||torch|| over the prompt's positions
    cosine: float  # mean over positions

    @property
    def label(self) -> str:
        return "logits" if self.block < 0 else f"block {self.block}"


def block_output_tensors(flatbuffer: bytes, subgraph: int) -> dict[int, int]:
    """Tensor index of each decoder block's output in `subgraph` (the last op output named after the block)."""
    from ai_edge_litert import schema_py_generated as schema

    # The flat reader walks only the graph; the object API would unpack every weight buffer into Python.
    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(subgraph)
    found: dict[int, int] = {}
    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        for j in range(op.OutputsLength()):
            index = op.Outputs(j)
            names = graph.Tensors(index).Name().decode(errors="replace").split(";;")
            match = next((m for m in (_BLOCK.search(n) for n in names) if m), None)
            if match:
                found[int(match.group(1))] = int(index)
    return found


def compare_blocks(path: str | Path, model: torch.nn.Module, tokens: list[int]) -> list[BlockError]:
    """Each block's output (and the logits, when the signature returns them) of the file vs `model` on `tokens`.

    Prefill signatures carry no logits by default, so their last block feeds nothing and the converter drops it:
    then the prompt goes through `decode` one token at a time, where every block survives."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:

        def blocks_of(signature: str) -> dict[int, int]:
            return block_output_tensors(data, it._interpreter.GetSubgraphIndexFromSignature(signature))

        signatures = it.get_signature_list()
        if "decode" not in signatures:
            raise ValueError(f"{path} has no decode signature: not a decoder converted by edge-models")
        decode_blocks = blocks_of("decode")
        # A file converted from another model would fail deep inside the interpreter (or compare nonsense).
        if len(decode_blocks) != len(model.layers):
            raise ValueError(
                f"{path} has {len(decode_blocks)} decoder blocks, the model has {len(model.layers)}: "
                "not a conversion of this model"
            )
        prefills = sorted((int(m.group(1)), s) for s in signatures if (m := re.fullmatch(r"prefill_(\d+)", s)))
        whole = [(n, s, b) for n, s in prefills if n >= len(tokens) and len(b := blocks_of(s)) == len(model.layers)]
    if whole:
        length, signature, where = whole[0]
        got, logits, kv = _run_prefill(it, signature, where, tokens, length)
    else:
        got, logits, kv = _run_decode(it, decode_blocks, tokens)
    want, want_logits = _torch_blocks(model, tokens, kv)
    rows = [_error(i, got[i], want[i]) for i in range(len(model.layers))]
    if logits is not None:
        rows.append(_error(-1, logits, want_logits))
    return rows


def _zero_inputs(runner) -> dict[str, np.ndarray]:
    return {name: np.zeros(d["shape"], d["dtype"]) for name, d in runner.get_input_details().items()}


def _kv_len(inputs: dict[str, np.ndarray]) -> int:
    return inputs[next(n for n in inputs if n.startswith("kv_cache_k_"))].shape[2]


def _run_prefill(it, signature: str, where: dict[int, int], tokens: list[int], length: int):
    """One call of `signature`: (block outputs [T, hidden] by block, logits [T, vocab] or None, KV length)."""
    runner = it.get_signature_runner(signature)
    inputs = _zero_inputs(runner)
    n = len(tokens)
    inputs["tokens"][0, :n] = tokens
    inputs["input_pos"][:n] = np.arange(n)
    outputs = runner(**inputs)
    subgraph = it._interpreter.GetSubgraphIndexFromSignature(signature)
    got = {i: it.get_tensor(t, subgraph).reshape(length, -1)[:n] for i, t in where.items()}
    logits = outputs["logits"][0, :n] if "logits" in outputs else None
    return got, logits, _kv_len(inputs)


def _run_decode(it, where: dict[int, int], tokens: list[int]):
    """`tokens` through `decode` one at a time, its caches carried from step to step."""
    runner = it.get_signature_runner("decode")
    inputs = _zero_inputs(runner)
    kv = _kv_len(inputs)
    if len(tokens) >= kv:
        raise ValueError(f"the prompt has {len(tokens)} tokens, the file's cache holds {kv}: give a shorter prompt")
    subgraph = it._interpreter.GetSubgraphIndexFromSignature("decode")
    steps: dict[int, list[np.ndarray]] = {i: [] for i in where}
    logits = []
    for pos, token in enumerate(tokens):
        inputs["tokens"][:] = token
        inputs["input_pos"][:] = pos
        outputs = runner(**inputs)
        inputs.update({name: value for name, value in outputs.items() if name.startswith("kv_cache_")})
        for i, t in where.items():
            steps[i].append(it.get_tensor(t, subgraph).reshape(-1))
        logits.append(outputs["logits"].reshape(-1))
    return {i: np.stack(v) for i, v in steps.items()}, np.stack(logits), kv


def _torch_blocks(model: torch.nn.Module, tokens: list[int], kv: int):
    """The model's block outputs [T, hidden] by block, and its logits [T, vocab], on `tokens`."""
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        block.register_forward_hook(lambda _m, _a, out, i=i: captured.__setitem__(i, out[0].detach()))
        for i, block in enumerate(model.layers)
    ]
    try:
        with torch.no_grad():
            logits, _ = model(torch.tensor([tokens]), torch.arange(len(tokens)), model.empty_cache(kv))
    finally:
        for h in hooks:
            h.remove()
    return {i: t[0].numpy() for i, t in captured.items()}, logits[0].numpy()


def _error(block: int, got: np.ndarray, want: np.ndarray) -> BlockError:
    got, want = got.astype(np.float64), want.astype(np.float64)
    relative = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    dots = (got * want).sum(-1) / np.maximum(np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1), 1e-30)
    return BlockError(block, relative, float(dots.mean()))


def first_jump(rows: list[BlockError], factor: float = 3.0) -> BlockError | None:
    """The first block whose relative error is `factor` times the previous block's (or above 0.5 outright)."""
    previous = None
    for row in rows:
        if row.block < 0:
            continue
        if row.relative > 0.5 or (previous is not None and row.relative > factor * max(previous, 1e-6)):
            return row
        previous = row.relative
    return None


def format_report(rows: list[BlockError]) -> str:
    lines = [f"{'':<10}{'relative error':>16}{'cosine':>12}"]
    lines += [f"{r.label:<10}{r.relative:>16.3e}{r.cosine:>12.6f}" for r in rows]
    jump = first_jump(rows)
    if jump is not None:
        lines.append(f"error jumps at {jump.label} ({jump.relative:.3e}): look there first")
    return "\n".join(lines)
