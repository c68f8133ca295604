"""llama.cpp's own tools on the same weights, for side-by-side rows: quantize, perplexity with KL divergence, speed.

Built here from the `llama-cpp-python` source distribution (no network beyond PyPI), about 10-30 min on 2 cores:

    pip download llama-cpp-python --no-deps --no-binary :all: -d /tmp/llama && cd /tmp/llama && tar xzf *.tar.gz
    cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF
    cmake --build build -j2 --target llama-perplexity llama-bench llama-quantize llama-lookup

then pass `--llama-cpp .../build/bin` (or put that directory on PATH). Each tool measures against its own F32 file
(`llama-quantize --allow-requantize` of the same GGUF), with its own protocol (`llama-perplexity -c 512`: chunks of
512 tokens, the second half of each scored); ratios compare across tools, absolute perplexities do not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

TOOLS = ("llama-quantize", "llama-perplexity", "llama-bench")


def find_tools(directory: Path | None) -> tuple[dict[str, Path] | None, str]:
    """The tools' paths (from `directory`, else PATH), or None and the reason they cannot be used."""
    found = {}
    for tool in TOOLS:
        path = directory / tool if directory else shutil.which(tool)
        if not path or not Path(path).is_file():
            where = str(directory) if directory else "PATH"
            return None, f"{tool} not found in {where} (see benchmarks/llama_cpp.py for how to build it)"
        found[tool] = Path(path)
    return found, ""


def _run(args: list, log: Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode:
        raise RuntimeError(f"{Path(args[0]).name} failed (exit {result.returncode}); see {log}")
    return result.stdout + result.stderr


def float32_file(tools: dict[str, Path], gguf: Path, work: Path) -> Path:
    out = work / "llama-f32.gguf"
    if not out.exists():
        tmp = out.with_suffix(".part")
        _run([tools["llama-quantize"], "--allow-requantize", gguf, tmp, "F32"], work / "llama-f32.log")
        tmp.rename(out)
    return out


def quantized_file(tools: dict[str, Path], f32: Path, kind: str, work: Path) -> Path:
    out = work / f"llama-{kind}.gguf"
    if not out.exists():
        tmp = out.with_suffix(".part")
        _run([tools["llama-quantize"], f32, tmp, kind], work / f"llama-{kind}-quantize.log")
        tmp.rename(out)
    return out


def base_logits(tools: dict[str, Path], f32: Path, text: Path, threads: int, work: Path) -> Path:
    """The F32 model's logits over `text` (llama-perplexity's KL base file)."""
    out = work / "llama-f32.kld"
    if not out.exists():
        args = ["-m", f32, "-f", text, "-c", 512, "-t", threads, "--kl-divergence-base", out]
        _run([tools["llama-perplexity"], *args], work / "llama-f32-perplexity.log")
    return out


_STATS = {
    "ppl": r"Mean PPL\(Q\)\s*:\s*([\d.]+)",
    "ratio": r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*([\d.]+)",
    "kl_mean": r"Mean\s+KLD:\s*([\d.]+)",
    "kl_99": r"99\.0%\s+KLD:\s*([\d.]+)",
    "top1": r"Same top p:\s*([\d.]+)",
}


def perplexity_row(tools: dict[str, Path], model: Path, base: Path, text: Path, threads: int, work: Path) -> dict:
    args = ["-m", model, "-f", text, "-c", 512, "-t", threads, "--kl-divergence-base", base, "--kl-divergence"]
    out = _run([tools["llama-perplexity"], *args], work / f"{model.stem}-perplexity.log")
    row = {}
    for key, pattern in _STATS.items():
        match = re.search(pattern, out)
        if not match:
            raise RuntimeError(f"llama-perplexity printed no '{key}' figure; see {work / model.stem}-perplexity.log")
        row[key] = float(match.group(1))
    row["top1"] /= 100
    return row


def decode_speed(tools: dict[str, Path], model: Path, threads: int, tokens: int, work: Path) -> float:
    """llama-bench's generation tokens/s. Weight repacking off: this VM reports AMX but faults when it is used."""
    args = ["-m", model, "-p", 0, "-n", tokens, "-t", threads, "--repack", 0, "-o", "json"]
    out = _run([tools["llama-bench"], *args], work / f"{model.stem}-bench.log")
    runs = json.loads(out[out.index("[") : out.rindex("]") + 1])
    return float(runs[0]["avg_ts"])


def row(tools: dict[str, Path], gguf: Path, kind: str, text: Path, threads: int, decode_tokens: int, work: Path):
    """One llama.cpp row: `kind` (Q8_0, Q4_0, Q4_K_S, ...) quantized from the F32 of `gguf`, measured against it."""
    f32 = float32_file(tools, gguf, work)
    base = base_logits(tools, f32, text, threads, work)
    model = quantized_file(tools, f32, kind, work)
    measured = perplexity_row(tools, model, base, text, threads, work)
    measured["decode_tok_s"] = decode_speed(tools, model, threads, decode_tokens, work)
    measured["size"] = model.stat().st_size
    model.unlink()
    return measured
