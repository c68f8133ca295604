"""The main job's code path (python -m edge_models.tools.demo / nox -s demo) on a tiny checkpoint."""

from __future__ import annotations

import importlib.util

import pytest

from edge_models import registry
from edge_models.testing import tiny_checkpoint, train_sentencepiece
from edge_models.tools import demo

pytestmark = pytest.mark.slow  # every test here converts a model


def test_demo_runs_end_to_end_and_reuses_its_artifacts(tmp_path, capsys):
    ckpt = tiny_checkpoint(registry().get("llama"), tmp_path / "ckpt")
    train_sentencepiece(ckpt / "tokenizer.model", vocab_size=256)
    args = [
        "--model",
        "llama",
        "--checkpoint",
        str(ckpt),
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--prefill",
        "8",
        "--kv-cache",
        "64",
        # Windowed signatures in the bundle: LiteRT-LM must load it and ignore them.
        "--decode-windows",
        "16",
        "--prefill-windows",
        "16",
        "--verify-tokens",
        "4",
        "--max-tokens",
        "6",
        "--prompt",
        "kalo",
    ]
    assert demo.main(args) == 0
    first = capsys.readouterr().out
    out = tmp_path / "artifacts" / "llama"
    assert {"model_int8-gptq.tflite", "model.task", "summary.txt", "stages.json"} <= {p.name for p in out.iterdir()}
    assert "PASSED" in first and "decode tokens/s" in first
    # `debug` on the file the demo converted (prefill signatures without logits): every block compared.
    blocks = registry().get("llama").tiny_config.num_layers
    line = next(x for x in first.splitlines() if x.startswith("per-block error vs fp32 (debug)"))
    assert f"{blocks} blocks, worst block" in line and "logits" in line, line
    if importlib.util.find_spec("litert_lm"):
        # The tiny calibrated int8 bundle in MediaPipe's engine: the same greedy text as ours for every demo prompt.
        assert "same text as ours on 6/6 prompts" in first, first
    else:
        assert "not checked (pip install litert-lm-api)" in first

    assert demo.main(args) == 0
    second = capsys.readouterr().out
    for stage in ("verifying", "converting", "bundling"):
        assert f"{stage}" in second
    assert second.count("reused") >= 3, second
