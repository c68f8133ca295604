"""Where a decode step (or a prefill) goes: time per part of the model against the weights each part reads.

LiteRT's Python API has no per-op profiler, so each part is measured on its own: `tflite.parts.write_parts_file`
cuts the signature along module boundaries (embedding, each block, the KV cache writes, the LM head) into a file
with one signature per part, each holding exactly the ops of that part over the same weights and kernels, and each
runs through the same CompiledModel/XNNPACK set-up the runtime uses. The whole signature runs in the same rounds, so
the sum of the parts can be checked against the step they were cut from: what the sum misses or adds is the
overhead of one call per part and what fusion across a cut would have saved.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_models.tflite.parts import PartSignature, write_parts_file
from edge_models.tflite.reading import flat_model, mapped
from edge_models.tflite.tensors_read import weight_bytes_read


@dataclass(frozen=True)
class PartTime:
    part: str
    seconds: float  # the fastest round: on a shared machine the least disturbed one
    median_seconds: float
    weight_bytes: int  # weights it reads per call
    operators: int

    def gb_s(self) -> float:
        return self.weight_bytes / self.seconds / 1e9 if self.seconds else 0.0


@dataclass
class SignatureProfile:
    signature: str
    whole_seconds: float  # the signature itself, fastest of the same rounds
    whole_median_seconds: float
    whole_weight_bytes: int
    parts: list[PartTime] = field(default_factory=list)

    @property
    def parts_seconds(self) -> float:
        return sum(p.seconds for p in self.parts)

    @property
    def dominant(self) -> PartTime:
        return max(self.parts, key=lambda p: p.seconds)

    @property
    def coverage(self) -> float:
        """Sum of the parts over the whole step (1.0: they add up exactly)."""
        return self.parts_seconds / self.whole_seconds if self.whole_seconds else 0.0


@dataclass
class Profile:
    file: str
    threads: int
    rounds: int
    bandwidth_gb_s: float  # what this machine reads with these threads (`tools.bench.read_bandwidth`)
    signatures: list[SignatureProfile]

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "threads": self.threads,
            "rounds": self.rounds,
            "method": "each part's ops as a signature of their own, timed with the runtime beside the whole signature",
            "bandwidth_gb_s": round(self.bandwidth_gb_s, 2),
            "signatures": [
                {
                    "signature": s.signature,
                    "whole_ms": s.whole_seconds * 1e3,
                    "whole_median_ms": s.whole_median_seconds * 1e3,
                    "whole_weight_bytes": s.whole_weight_bytes,
                    "parts_ms": s.parts_seconds * 1e3,
                    "parts_over_whole": s.coverage,
                    "dominant": s.dominant.part,
                    "parts": [
                        {
                            "part": p.part,
                            "ms": p.seconds * 1e3,
                            "median_ms": p.median_seconds * 1e3,
                            "share": p.seconds / s.parts_seconds if s.parts_seconds else 0.0,
                            "weight_bytes": p.weight_bytes,
                            "gb_s": p.gb_s(),
                            "of_bandwidth": p.gb_s() / self.bandwidth_gb_s if self.bandwidth_gb_s else 0.0,
                            "operators": p.operators,
                        }
                        for p in s.parts
                    ],
                }
                for s in self.signatures
            ],
        }


def _compiled(path: Path, threads: int, cache: Path | None):
    """The model as the runtime compiles it (`runtime.litert_model`): its XNNPACK flags, and one packed copy of the
    weights shared by every signature (without `cache`, the runtime's own cache file for `path`)."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.options import Options

    import edge_models.runtime.weight_cache as weight_cache
    from edge_models.runtime.litert_model import XNNPACK_FLAGS

    options = Options()
    options.cpu_options.num_threads = threads
    options.cpu_options.xnnpack_flags = XNNPACK_FLAGS
    if cache is not None:
        cache.touch()
        options.cpu_options.xnnpack_weight_cache_path = str(cache)
        return CompiledModel.from_file(str(path), options=options)
    with weight_cache.weight_cache(weight_cache.file_identity(path), XNNPACK_FLAGS) as use:
        if use.path is not None:
            options.cpu_options.xnnpack_weight_cache_path = str(use.path)
        return CompiledModel.from_file(str(path), options=options)


def _filler(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.floating):
        return np.random.default_rng(0).standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)


class _Runner:
    """One signature of a compiled model with its buffers made once and filled with zeros (token 0 at position 0:
    a decode step costs the same wherever it writes, every cache slot is read through the mask)."""

    def __init__(
        self,
        compiled,
        signature: str,
        inputs: dict[str, tuple[tuple[int, ...], str]],
        outputs: list[str],
        in_place: dict[str, str],
    ):
        self.compiled, self.signature = compiled, signature
        self.inputs = {n: compiled.create_input_buffer_by_name(signature, n) for n in inputs}
        for name, (shape, dtype) in inputs.items():
            self.inputs[name].write(_filler(shape, dtype))
        # A cache is bound as input and output of the same call, as the runtime binds it: written in place.
        self.outputs = {
            n: self.inputs[in_place[n]] if n in in_place else compiled.create_output_buffer_by_name(signature, n)
            for n in outputs
        }

    def run(self) -> float:
        started = time.perf_counter()
        self.compiled.run_by_name(self.signature, self.inputs, self.outputs)
        return time.perf_counter() - started


def _signature_io(tflite, signature: str) -> tuple[dict[str, tuple[tuple[int, ...], str]], list[str], int]:
    model = flat_model(tflite)
    for k in range(model.SignatureDefsLength()):
        definition = model.SignatureDefs(k)
        if definition.SignatureKey().decode() != signature:
            continue
        graph = model.Subgraphs(definition.SubgraphIndex())
        dtypes = {0: "float32", 1: "float16", 2: "int32", 4: "int64", 6: "bool", 9: "int8"}
        inputs = {}
        for i in range(definition.InputsLength()):
            tensor = graph.Tensors(definition.Inputs(i).TensorIndex())
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
            inputs[definition.Inputs(i).Name().decode()] = (shape, dtypes.get(tensor.Type(), "float32"))
        outputs = [definition.Outputs(i).Name().decode() for i in range(definition.OutputsLength())]
        return inputs, outputs, weight_bytes_read(model, definition.SubgraphIndex())
    raise ValueError(f"no signature {signature!r}")


def profile_signature(path: str | Path, signature: str, threads: int, rounds: int, workdir: Path) -> SignatureProfile:
    parts_path = workdir / f"{signature}.parts.tflite"
    parts: list[PartSignature] = write_parts_file(path, parts_path, signature)
    with mapped(path) as data:
        inputs, outputs, whole_bytes = _signature_io(data, signature)
    whole_model = _compiled(Path(path), threads, None)
    caches = {n: n for n in outputs if n.startswith("kv_cache_") and n in inputs}
    whole = _Runner(whole_model, signature, inputs, outputs, caches)
    parts_model = _compiled(parts_path, threads, workdir / f"{signature}.parts.xnnpack_cache")
    with mapped(parts_path) as data:
        io = {p.signature: _signature_io(data, p.signature) for p in parts}
    runners = [_Runner(parts_model, p.signature, *io[p.signature][:2], p.in_place) for p in parts]
    for _ in range(3):  # warm-up: first runs pack weights and fault pages in
        whole.run()
        for r in runners:
            r.run()
    whole_times, part_times = [], [[] for _ in runners]
    for _ in range(rounds):  # interleaved: a slow moment of a shared machine touches every part alike
        whole_times.append(whole.run())
        for times, r in zip(part_times, runners):
            times.append(r.run())
    return SignatureProfile(
        signature,
        min(whole_times),
        statistics.median(whole_times),
        whole_bytes,
        [
            PartTime(p.part, min(times), statistics.median(times), io[p.signature][2], p.operators)
            for p, times in zip(parts, part_times)
        ],
    )


def profile_file(
    path: str | Path,
    signatures: list[str],
    threads: int,
    rounds: int = 20,
    bandwidth_gb_s: float | None = None,
) -> Profile:
    """Profile each of `signatures` of the .tflite at `path`."""
    from edge_models.tools.bench import read_bandwidth

    with tempfile.TemporaryDirectory(prefix="edge-models-profile-") as tmp:
        found = [profile_signature(path, s, threads, rounds, Path(tmp)) for s in signatures]
    bandwidth = bandwidth_gb_s if bandwidth_gb_s is not None else read_bandwidth(threads)
    return Profile(str(path), threads, rounds, bandwidth, found)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def format_profile(profile: Profile) -> str:
    lines = [
        f"{Path(profile.file).name}: {profile.threads} threads, fastest of {profile.rounds} interleaved rounds; "
        f"this machine reads {profile.bandwidth_gb_s:.1f} GB/s with these threads",
        "each part = its ops as a signature of their own, same weights and kernels, timed beside the whole signature",
    ]
    for s in profile.signatures:
        head = ["part", "ms", "median ms", "share", "weights MB", "GB/s", "of bandwidth", "ops"]
        rows = [
            [
                p.part,
                f"{p.seconds * 1e3:.3f}",
                f"{p.median_seconds * 1e3:.3f}",
                f"{100 * p.seconds / s.parts_seconds:.1f} %",
                _mb(p.weight_bytes),
                f"{p.gb_s():.1f}",
                f"{100 * p.gb_s() / profile.bandwidth_gb_s:.0f} %" if profile.bandwidth_gb_s else "-",
                str(p.operators),
            ]
            for p in s.parts
        ]
        median_sum = sum(p.median_seconds for p in s.parts)
        rows.append(
            [
                "sum of parts",
                f"{s.parts_seconds * 1e3:.3f}",
                f"{median_sum * 1e3:.3f}",
                "",
                _mb(sum(p.weight_bytes for p in s.parts)),
            ]
        )
        rows.append(
            [
                "whole " + s.signature,
                f"{s.whole_seconds * 1e3:.3f}",
                f"{s.whole_median_seconds * 1e3:.3f}",
                "",
                _mb(s.whole_weight_bytes),
            ]
        )
        widths = [max(len(r[i]) if i < len(r) else 0 for r in [head, *rows]) for i in range(len(head))]
        lines += ["", f"{s.signature}:"]
        for r in [head, ["-" * w for w in widths], *rows]:
            cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
            lines.append("  ".join(cells).rstrip())
        lines.append(
            f"parts add up to {100 * s.coverage:.1f} % of the measured {s.signature}; "
            f"{s.dominant.part} dominates ({100 * s.dominant.seconds / s.parts_seconds:.0f} % of the parts)"
        )
    return "\n".join(lines)
