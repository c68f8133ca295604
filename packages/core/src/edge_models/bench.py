"""Speed and memory of a converted model (and of PyTorch eager on the same shape), as table rows."""

from __future__ import annotations

import mmap
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_models.runtime.memory import peak_rss_bytes

if TYPE_CHECKING:
    import torch


@dataclass
class BenchRow:
    label: str
    size_bytes: int | None
    prefill_tok_s: dict[int, float] = field(default_factory=dict)
    decode_tok_s: float = 0.0
    first_token_ms: float = 0.0
    peak_rss_bytes: int = 0
    shortlist_tok_s: float = 0.0  # decode through the file's shortlist signatures, when it has them
    parameters: int = 0  # of the model measured (a file: the constants its decode step holds), so rows say what ran
    kv_bytes: int = 0  # the KV cache the runtime holds beside the weights

    def best_with(self, other: BenchRow) -> BenchRow:
        """The better figure of two runs of the same contender, figure by figure (for interleaved rounds)."""
        return BenchRow(
            self.label,
            self.size_bytes,
            {n: max(t, other.prefill_tok_s.get(n, 0.0)) for n, t in self.prefill_tok_s.items()},
            max(self.decode_tok_s, other.decode_tok_s),
            min(self.first_token_ms, other.first_token_ms),
            max(self.peak_rss_bytes, other.peak_rss_bytes),
            max(self.shortlist_tok_s, other.shortlist_tok_s),
            self.parameters,
            self.kv_bytes,
        )


def run_measured(fn, *args):
    """Run `fn(*args)` in a fresh process: returns (result, its peak RSS in bytes, seconds).

    A process of its own makes the peak memory that of this one job, not of everything before it.
    `fn` must be importable (a module-level function).
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from edge_models import console

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        future = pool.submit(_measured, fn, *args)
        console.relay_stages(future)
        return future.result()


def _measured(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, peak_rss_bytes(), time.perf_counter() - started


def _best_of(repeats: int, fn) -> float:
    fn()  # warm-up: first calls allocate and pack weights
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_tflite(
    path: str | Path,
    decode_tokens: int = 64,
    threads: int | None = None,
    repeats: int = 3,
    engine: str = "compiled",
    windows: bool = True,
    lora: str | Path | None = None,
) -> BenchRow:
    """`lora`: a packed adapter bound to a file converted with LoRA inputs (its cost is the B A x of each slot)."""
    from edge_models.runtime import LiteRTModel

    path = Path(path)
    if path.suffix in (".task", ".litertlm"):
        from edge_models.runtime.bundles import read_bundle

        model = LiteRTModel.from_bundle(read_bundle(path), threads, engine, windows)
    else:
        model = LiteRTModel(path, threads, engine, windows)
    if lora is not None:
        from edge_models.runtime.lora_format import read_adapter_file

        model.set_lora(read_adapter_file(lora)[0])
    label = f"edge-models {path.name} ({engine}{', adapter ' + Path(lora).name if lora else ''})"
    row = BenchRow(label, path.stat().st_size, parameters=model_shape(tflite_view(path)).parameters)
    row.kv_bytes = model.kv_cache_bytes
    rng = np.random.default_rng(0)
    for length in sorted(model.info.prefill_lengths.values()):
        ids = rng.integers(0, model.vocab_size, length).tolist()
        row.prefill_tok_s[length] = length / _best_of(repeats, lambda ids=ids: model.prefill(ids, 0))
    steps = min(decode_tokens, model.kv_len - 1)

    def decode_run():
        for pos in range(steps):
            model.decode(1, pos)

    row.decode_tok_s = steps / _best_of(1, decode_run)
    if model.shortlist_size:

        def shortlist_run():
            for pos in range(steps):
                model.decode_shortlist(1, pos)

        row.shortlist_tok_s = steps / _best_of(1, shortlist_run)
    smallest = min(model.info.prefill_lengths.values())
    ids = rng.integers(0, model.vocab_size, smallest).tolist()

    def first_token():
        model.prefill(ids[:-1], 0)
        model.decode(ids[-1], smallest - 1)

    row.first_token_ms = 1000 * _best_of(repeats, first_token)
    row.peak_rss_bytes = peak_rss_bytes()
    return row


@dataclass(frozen=True)
class LoadRow:
    seconds: float
    peak_rss_bytes: int


def _load_once(path: str, cache_folder: str | None) -> LoadRow:
    import os

    from edge_models.runtime import weight_cache

    if cache_folder is None:
        os.environ[weight_cache.ENV_OFF] = "1"
    else:
        os.environ[weight_cache.ENV_DIR] = cache_folder
        os.environ.pop(weight_cache.ENV_OFF, None)
    from edge_models.runtime import LiteRTModel, read_bundle

    bundled = Path(path).suffix in (".task", ".litertlm")
    model = LiteRTModel.from_bundle(read_bundle(path)) if bundled else LiteRTModel(path)
    # Mapped weights are resident only once read: the peak that matters is that of a model that ran.
    model.prefill(list(range(1, min(model.info.prefill_lengths.values()) + 1)))
    for pos in range(8):
        model.decode(1, pos)
    return LoadRow(model.load_seconds, peak_rss_bytes())


def bench_loads(path: str | Path, signatures: int) -> dict[str, LoadRow | str]:
    """Loading `path` in fresh processes: without the packed-weight cache, with it cold (packing and writing it),
    and warm (mapping it); each with the peak RSS of a process that loaded the model, prefilled and decoded 8 steps.
    Without the cache each of the `signatures` packs its own copy: a load that would not fit in the memory
    available is skipped, with the reason, instead of being killed."""
    import tempfile

    rows: dict[str, LoadRow | str] = {}
    need = Path(path).stat().st_size * signatures
    if need > 0.8 * _available_memory():
        rows["no cache"] = f"skipped (~{need / 2**30:.0f} GiB: {signatures} signatures, each packing its own copy)"
    else:
        rows["no cache"] = run_measured(_load_once, str(path), None)[0]
    with tempfile.TemporaryDirectory(prefix="edge-models-bench-cache-") as folder:
        rows["cache cold"] = run_measured(_load_once, str(path), folder)[0]
        rows["cache warm"] = run_measured(_load_once, str(path), folder)[0]
    return rows


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: measure


def format_loads(loads: dict[str, LoadRow | str], file_bytes: int, kv_bytes: int) -> str:
    parts = [
        f"{name} {row}"
        if isinstance(row, str)
        else f"{name} {row.seconds:.2f} s, {row.peak_rss_bytes / 2**30:.2f} GiB "
        f"({row.peak_rss_bytes / (file_bytes + kv_bytes):.2f}x file + KV)"
        for name, row in loads.items()
    ]
    held = f"file {file_bytes / 1e6:,.1f} MB, KV cache {kv_bytes / 1e6:,.1f} MB"
    return f"load, prefill and 8 decode steps in a fresh process ({held}): " + "; ".join(parts)


def bench_torch_model(model, label: str, prefill_lengths, decode_tokens: int = 64, repeats: int = 3) -> BenchRow:
    """PyTorch eager on our decoder: the same lengths and measurements as `bench_tflite`."""
    import torch

    kv = max(prefill_lengths) + decode_tokens + 1
    row = BenchRow(label, None, parameters=sum(p.numel() for p in model.parameters()))
    vocab = model.config.vocab_size
    with torch.no_grad():
        for length in sorted(prefill_lengths):
            ids = torch.randint(0, vocab, (1, length))
            cache = model.empty_cache(kv)
            positions = torch.arange(length)
            row.prefill_tok_s[length] = length / _best_of(repeats, lambda i=ids, p=positions, c=cache: model(i, p, c))

        def decode_run():
            cache = model.empty_cache(kv)
            for pos in range(decode_tokens):
                _, cache = model(torch.tensor([[1]]), torch.tensor([pos]), cache)

        row.decode_tok_s = decode_tokens / _best_of(1, decode_run)
        smallest = min(prefill_lengths)
        ids = torch.randint(0, vocab, (1, smallest))
        row.first_token_ms = 1000 * _best_of(repeats, lambda: model(ids, torch.arange(smallest), model.empty_cache(kv)))
    row.peak_rss_bytes = peak_rss_bytes()
    return row


def torch_model_of_file(
    model_name: str, checkpoint: str | Path | None, shape: ModelShape, tiny: bool = False
) -> tuple[Callable[[], torch.nn.Module], str]:
    """(a function building it, row label) for the PyTorch model of the model a file holds: `model_name` on
    `checkpoint`, or without one, the first of its published and tiny configs whose shape is the file's `shape`
    (random weights). Refuses a model of another shape, from its config alone (nothing loaded): a speed ratio
    between different models means nothing."""
    from edge_models.models import load_for_spec, random_model, resolve_config
    from edge_models.plugins import registry

    spec = registry().get(model_name)
    if checkpoint:
        if differences := shape.differences(resolve_config(spec, checkpoint)):
            raise ValueError(
                f"{checkpoint} as {model_name} is not the model in the file ({'; '.join(differences)}): "
                "give the checkpoint it was converted from"
            )
        return lambda: load_for_spec(spec, checkpoint), f"pytorch eager fp32 {model_name} ({Path(checkpoint).name})"
    configs = [("tiny config", spec.tiny_config)] if tiny else [("published shape", spec.config)]
    configs += [] if tiny else [("tiny config", spec.tiny_config)]
    match = next(((label, c) for label, c in configs if not shape.differences(c)), None)
    if match is None:
        label, config = configs[0]
        raise ValueError(
            f"the file is not {model_name}'s {label} ({'; '.join(shape.differences(config))}): give "
            "--checkpoint with the weights it was converted from, or the registered model of its shape"
        )
    label, config = match
    return lambda: random_model(config), f"pytorch eager fp32 {model_name} ({label}, random weights)"


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of the decoder a converted file holds, read from its `decode` signature."""

    vocab_size: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    parameters: int  # elements of the constants `decode` reads or looks up (weights, norms, small tables)
    signatures: int  # subgraphs sharing those weights (XNNPACK packs them once for each without a weight cache)

    def differences(self, config) -> list[str]:
        """What differs from a `ModelConfig`, one phrase per dimension ("layers: file 30, model 22")."""
        pairs = {
            "vocabulary": (self.vocab_size, config.vocab_size),
            "layers": (self.num_layers, config.num_layers),
            "KV heads": (self.num_kv_heads, config.attention.num_kv_heads),
            "head size": (self.head_dim, config.attention.head_dim),
            "hidden size": (self.hidden_size, config.hidden_size),
        }
        return [f"{name}: file {ours:,}, model {theirs:,}" for name, (ours, theirs) in pairs.items() if ours != theirs]


def tflite_view(path: str | Path) -> bytes | mmap.mmap:
    """The model of a .tflite (memory-mapped: reading a 5 GB file would add 5 GB to the peak RSS being measured)
    or of a bundle."""
    from edge_models.runtime.bundles import BUNDLE_SUFFIXES, read_bundle

    path = Path(path)
    if path.suffix in BUNDLE_SUFFIXES:
        return read_bundle(path).tflite
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def model_shape(tflite: bytes | mmap.mmap) -> ModelShape:
    """The file's dimensions: vocabulary from `decode`'s logits, layers and KV layout from its caches
    (K `[1, kv_heads, KV, head_dim]`), the hidden size from the embedding table it looks up."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite, 0)
    signature = next(
        s for s in (model.SignatureDefs(i) for i in range(model.SignatureDefsLength())) if s.SignatureKey() == b"decode"
    )
    graph = model.Subgraphs(signature.SubgraphIndex())
    inputs = {(t := signature.Inputs(i)).Name(): t.TensorIndex() for i in range(signature.InputsLength())}
    outputs = {(t := signature.Outputs(i)).Name(): t.TensorIndex() for i in range(signature.OutputsLength())}
    # The first attention layer's K cache: in a hybrid model layer 0 may carry state instead (`kv_cache_c_0`).
    first_k = next(index for name, index in sorted(inputs.items()) if name.startswith(b"kv_cache_k_"))
    k_cache = graph.Tensors(first_k).ShapeAsNumpy()
    lookups = {schema.BuiltinOperator.EMBEDDING_LOOKUP: 1, schema.BuiltinOperator.GATHER: 0}
    hidden, constants = 0, {}
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        table = lookups.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        for i in range(op.InputsLength()):
            if op.Inputs(i) < 0 or not (tensor := graph.Tensors(op.Inputs(i))).Buffer():
                continue
            buffer = model.Buffers(tensor.Buffer())
            if (buffer.Size() if buffer.Offset() > 1 else buffer.DataLength()) == 0:
                continue
            dims = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.array([1])
            constants[tensor.Buffer()] = int(np.prod(dims))
            if table == i and len(dims) == 2:
                hidden = max(hidden, int(dims[1]))
    return ModelShape(
        vocab_size=int(graph.Tensors(outputs[b"logits"]).ShapeAsNumpy()[-1]),
        num_layers=sum(1 for name in inputs if name.startswith(b"kv_cache_k_")),
        num_kv_heads=int(k_cache[1]),
        head_dim=int(k_cache[3]),
        hidden_size=hidden,
        parameters=sum(constants.values()),
        signatures=model.SignatureDefsLength(),
    )


# An input-grounded prompt: the continuation repeats text the prompt holds, which is where prompt-lookup drafts pay.
GROUNDED_PROMPT = (
    "Here is a list of the planets and one fact about each.\n"
    "Mercury: the smallest planet, and the closest to the Sun.\n"
    "Venus: the hottest planet, under thick clouds of acid.\n"
    "Earth: the only planet known to hold life.\n"
    "Mars: a cold desert with the tallest volcano of all.\n"
    "Jupiter: the largest planet, a giant made mostly of gas.\n\n"
    "The same list again, word for word:\nMercury:"
)


@dataclass
class GenerationRow:
    label: str
    decode_tok_s: float
    drafted: int
    accepted: int
    tokens: list[int]


def bench_generation(
    path: str | Path,
    tokenizer: str | Path | None,
    prompt: str,
    max_tokens: int = 64,
    threads: int | None = None,
    lora: str | Path | None = None,
) -> list[GenerationRow]:
    """Greedy generation of `prompt`, plain and speculative (prompt-lookup drafts checked by the verify
    signatures), each after a warm-up run; the effective decode rate counts every token the run produced.
    No rows for a file without verify signatures."""
    from edge_models.runtime import Generator, SamplerConfig

    gen = Generator.open(path, tokenizer=tokenizer, threads=threads)
    if not gen.model.info.verify:
        return []
    if lora is not None:
        from edge_models.runtime.lora_format import read_adapter_file

        gen.model.set_lora(read_adapter_file(lora)[0])
    ids = gen.encode(prompt)
    room = gen.model.kv_len - len(ids)
    if room < 2:
        raise ValueError(
            f"the prompt is {len(ids)} tokens and the KV cache holds {gen.model.kv_len}; give a shorter --prompt"
        )
    max_tokens = min(max_tokens, room)
    rows = []
    for label, speculate in (("plain decoding", False), ("speculative (prompt lookup)", True)):
        list(gen.generate_ids(ids, max_tokens, SamplerConfig(), speculate=speculate))  # warm-up
        tokens = list(gen.generate_ids(ids, max_tokens, SamplerConfig(), speculate=speculate))
        stats = gen.last_stats
        rows.append(
            GenerationRow(label, stats.decode_tokens_per_s, stats.drafted_tokens, stats.accepted_tokens, tokens)
        )
    return rows


def format_generation(rows: list[GenerationRow]) -> str:
    plain = rows[0]
    lines = [
        f"| greedy generation, {len(plain.tokens)} tokens | decode tok/s | vs plain | drafts accepted | same tokens |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        accepted = f"{r.accepted}/{r.drafted} ({100 * r.accepted / r.drafted:.0f} %)" if r.drafted else "-"
        speedup = r.decode_tok_s / plain.decode_tok_s if plain.decode_tok_s else 0.0
        same = "yes" if r.tokens == plain.tokens else "no"
        lines.append(f"| {r.label} | {r.decode_tok_s:.1f} | {speedup:.2f}x | {accepted} | {same} |")
    return "\n".join(lines)


def read_bandwidth(threads: int, gib: float = 1.0) -> float:
    """GB/s this machine reads with `threads` threads: the best of three passes of a maximum over `gib` GiB split
    between them (a vectorized read with next to no arithmetic; numpy releases the GIL for it). Decode reads every
    weight once per token, so this is the roof of its speed."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(int(gib * 2**30) // 4, np.float32)
    chunks = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.max, chunks))
        best = min(_timed(lambda: list(pool.map(np.max, chunks))) for _ in range(3))
    return data.nbytes / best / 1e9


def decode_weight_bytes(tflite: bytes | mmap.mmap, shortlist: bool = False) -> int:
    """Bytes of constant data (weights) `decode` (or with `shortlist`, `shortlist_<K>`) reads per token: every
    buffer an operator of it takes, except those only looked up a row at a time (an untied embedding, the head rows
    a shortlist scores); the KV cache is not counted."""
    from ai_edge_litert import schema_py_generated as schema

    # Which input of a lookup op holds the table (EMBEDDING_LOOKUP takes the ids first).
    tables = {schema.BuiltinOperator.EMBEDDING_LOOKUP: 1, schema.BuiltinOperator.GATHER: 0}
    model = schema.Model.GetRootAs(tflite, 0)
    signatures = [model.SignatureDefs(i) for i in range(model.SignatureDefsLength())]
    wanted = re.compile(rb"shortlist_\d+" if shortlist else rb"decode")
    graph = model.Subgraphs(next(s for s in signatures if wanted.fullmatch(s.SignatureKey())).SubgraphIndex())
    read, looked_up = set(), set()
    for o in range(graph.OperatorsLength()):
        op = graph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        for i in range(op.InputsLength()):
            if op.Inputs(i) < 0 or not (tensor := graph.Tensors(op.Inputs(i))).Buffer():
                continue
            found = looked_up if tables.get(kind) == i else read
            found.add(tensor.Buffer())
            quantization = tensor.Quantization()
            if quantization and quantization.DetailsType() == schema.QuantizationDetails.BlockwiseQuantization:
                blocks = schema.BlockwiseQuantization()  # int4 blocks: their scales are a tensor of their own
                blocks.Init(quantization.Details().Bytes, quantization.Details().Pos)
                found.add(graph.Tensors(blocks.Scales()).Buffer())
    sizes = {
        b: model.Buffers(b).Size() if model.Buffers(b).Offset() > 1 else model.Buffers(b).DataLength() for b in read
    }
    return sum(sizes.values())


def format_bandwidth(path: str, tok_s: float, weight_bytes: int, bandwidth: float) -> str:
    """How close a decode speed (through `path`: decode, or the shortlist) is to the memory roof."""
    reads = tok_s * weight_bytes / 1e9
    return (
        f"{path} reads {weight_bytes / 1e6:,.1f} MB of weights per token: {tok_s:.1f} tok/s = "
        f"{reads:.1f} GB/s, {100 * reads / bandwidth:.0f} % of the {bandwidth:.1f} GB/s this machine reads with "
        f"these threads (roof: {bandwidth * 1e9 / weight_bytes:.0f} tok/s)"
    )


def format_table(rows: list[BenchRow], baseline: BenchRow | None = None) -> str:
    """Markdown table; with a baseline, a column of decode speed-ups against it."""
    baseline = baseline or (rows[-1] if len(rows) > 1 else None)
    lengths = sorted({n for r in rows for n in r.prefill_tok_s})
    shortlist = any(r.shortlist_tok_s for r in rows)
    head = ["", "params", "size MB", *[f"prefill {n} tok/s" for n in lengths], "decode tok/s"]
    head += ["decode via shortlist tok/s"] if shortlist else []
    head += [f"decode vs {baseline.label.split(' (')[0]}"] if baseline else []
    head += ["first token ms", "peak RSS GiB"]
    memory = any(r.size_bytes and r.kv_bytes for r in rows)
    head += ["RSS / (file + KV)"] if memory else []
    lines = [head]
    for r in rows:
        line = [
            r.label,
            f"{r.parameters / 1e6:,.1f}M" if r.parameters else "-",
            f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "-",
            *[f"{r.prefill_tok_s[n]:.1f}" if n in r.prefill_tok_s else "-" for n in lengths],
            f"{r.decode_tok_s:.1f}",
        ]
        if shortlist:
            line.append(f"{r.shortlist_tok_s:.1f}" if r.shortlist_tok_s else "-")
        if baseline:
            line.append(f"{r.decode_tok_s / baseline.decode_tok_s:.2f}x" if baseline.decode_tok_s else "-")
        line += [f"{r.first_token_ms:.0f}", f"{r.peak_rss_bytes / 2**30:.2f}"]
        if memory:
            held = (r.size_bytes or 0) + r.kv_bytes
            line.append(f"{r.peak_rss_bytes / held:.2f}x" if r.size_bytes else "-")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)
