"""The bytes of converted files, pinned: a refactoring of the converter or of the flatbuffer writing must leave every
file it writes byte-identical.

Tiny models of several families, their weights small integers over a power of two (exact in float32, the same on
every CPU: `torch.randint` from a seeded generator, not `normal_`, whose vectorised paths differ between machines),
are converted with short signatures and their sha256 compared with `tests/data/converted_digests.json`. When a change
of the bytes is intended, write the new digests with

    EDGE_MODELS_UPDATE_DIGESTS=1 python -m pytest tests/test_converted_files_unchanged.py

and say in the commit why the files changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.layers import Decoder

DIGESTS = Path(__file__).parent / "data" / "converted_digests.json"
UPDATE = "EDGE_MODELS_UPDATE_DIGESTS"
SHORT = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)
# Every extra signature kind the converter writes: a decode window, verify, shortlist.
EVERY_KIND = ExportSettings(
    prefill_lengths=(4, 8), kv_cache_len=32, decode_windows=(16,), prefill_windows=(16,), verify_lengths=(4,),
    shortlist=16,
)  # fmt: skip

# (case, family, recipe, settings, LoRA rank)
CASES = [
    ("gemma3-fp32", "gemma3-270m", "fp32", SHORT, 0),
    ("gemma3-int8", "gemma3-270m", "int8", SHORT, 0),
    ("gemma3-int4-mixed", "gemma3-270m", "attention=int4-block32,feedforward=int8-weight", SHORT, 0),
    ("llama-fp32", "llama", "fp32", SHORT, 0),
    ("tinyllama-int8", "tinyllama-1.1b", "int8", SHORT, 0),
    ("qwen2-int8", "qwen2", "int8", SHORT, 0),
    ("qwen3-fp16", "qwen3", "fp16", SHORT, 0),
    ("phi2-int8", "phi-2", "int8", SHORT, 0),
    ("phi3-int8", "phi3", "int8", SHORT, 0),
    ("mistral-int4", "mistral", "int4-block32", SHORT, 0),
    ("llama-int8-lora-every-signature", "llama", "int8", EVERY_KIND, 4),
]


def integer_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter set to k / 256 for k drawn from [-32, 32]."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            k = torch.randint(-32, 33, tuple(p.shape), generator=generator, dtype=torch.int64)
            p.copy_(k.to(torch.float32) / 256)
    return model


def tiny_model(family: str, lora_rank: int = 0, seed: int = 0) -> Decoder:
    from edge_models.layers.lora import add_lora_slots, parse_targets

    model = Decoder(registry().get(family).tiny_config)
    if lora_rank:
        add_lora_slots(model, lora_rank, parse_targets(None))
    return integer_weights(model, seed).eval()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expect(case: str, path: Path) -> None:
    """`path`'s digest is the one recorded for `case` (or is recorded, with EDGE_MODELS_UPDATE_DIGESTS set)."""
    recorded = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    digest = sha256(path)
    if os.environ.get(UPDATE):
        recorded[case] = digest
        DIGESTS.parent.mkdir(parents=True, exist_ok=True)
        DIGESTS.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")
        return
    assert case in recorded, f"no digest recorded for {case!r}: run with {UPDATE}=1 to record it"
    assert digest == recorded[case], (
        f"{case}: {path.name} is no longer byte-identical to the file this code used to write "
        f"(sha256 {digest}, recorded {recorded[case]}). If the change is intended, rerun with {UPDATE}=1 to record "
        f"the new digests and say why in the commit."
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """Each case's file, converted once (the pruning test reads one of them)."""
    root = tmp_path_factory.mktemp("converted")
    return {
        case: convert(tiny_model(family, rank), root / f"{case}.tflite", settings, recipe, progress=None).path
        for case, family, recipe, settings, rank in CASES
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_converted_file_is_byte_identical(converted, case):
    expect(case, converted[case])


@pytest.mark.slow
def test_pruned_file_is_byte_identical(converted, tmp_path):
    from edge_models.tflite.pruning import drop_signatures
    from edge_models.tflite.reading import signature_names

    source = converted["llama-int8-lora-every-signature"]
    out = tmp_path / "pruned.tflite"
    drop_signatures(source, out, [s for s in signature_names(source) if s.startswith(("shortlist_", "verify_"))])
    expect("llama-int8-lora-every-signature-pruned", out)


def test_adapter_file_is_byte_identical(tmp_path):
    from edge_models.tflite.lora import write_adapter_file

    generator = torch.Generator().manual_seed(5)
    matrices = {
        f"lora_atten_{t}_{ab}_prime_weight_{layer}": (
            torch.randint(-32, 33, shape, generator=generator).to(torch.float32).numpy() / np.float32(256)
        )
        for layer in range(2)
        for t in "qv"
        for ab, shape in (("a", (128, 4)), ("b", (4, 128)))
    }
    out = tmp_path / "adapter.tflite"
    with open(out, "wb") as f:
        write_adapter_file(matrices, 4, f, description="pinned")
    expect("lora-adapter-file", out)
