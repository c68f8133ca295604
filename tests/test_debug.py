"""`edge-models debug`: per-block distance between a converted file and the PyTorch model."""

from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import load_for_spec, random_model
from edge_models.testing import tiny_checkpoint, train_sentencepiece
from edge_models.tools.debug import compare_blocks, first_jump, format_report

pytestmark = pytest.mark.slow  # every test here converts a model

SETTINGS = ExportSettings(prefill_lengths=(16,), kv_cache_len=32, prefill_logits=True)
# As `edge-models convert` writes files: prefill signatures without logits, so their last block is dropped.
CLI_DEFAULT = ExportSettings(prefill_lengths=(16,), kv_cache_len=32)
TOKENS = list(range(3, 15))


def test_report_finds_a_deliberately_corrupted_block(tmp_path):
    model = random_model(registry().get("gemma3-270m").tiny_config, seed=1)
    clean = convert(model, tmp_path / "clean.tflite", CLI_DEFAULT, "fp32", progress=None).path
    rows = compare_blocks(clean, model, TOKENS)
    assert [r.block for r in rows] == [*range(model.config.num_layers), -1]
    assert all(r.relative < 1e-5 and r.cosine > 0.99999 for r in rows), format_report(rows)
    assert first_jump(rows) is None

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.layers[1].mlp.down_proj.weight.mul_(-3.0)
    path = convert(broken, tmp_path / "broken.tflite", CLI_DEFAULT, "fp32", progress=None).path
    rows = compare_blocks(path, model, TOKENS)
    assert rows[0].relative < 1e-5
    assert first_jump(rows).block == 1, format_report(rows)
    assert "error jumps at block 1" in format_report(rows)


def test_cli_debug_prints_every_block(tmp_path):
    """Through a prefill signature that returns logits (every block survives there)."""
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    spec = registry().get("llama")
    ckpt = tiny_checkpoint(spec, tmp_path / "ckpt")
    train_sentencepiece(ckpt / "tokenizer.model", vocab_size=256)
    path = convert(load_for_spec(spec, ckpt), tmp_path / "m.tflite", SETTINGS, "int8", progress=None).path
    result = CliRunner().invoke(cli, ["debug", str(path), "--checkpoint", str(ckpt), "--prompt", "kalo mira"])
    assert result.exit_code == 0, result.output
    for i in range(spec.tiny_config.num_layers):
        assert f"block {i}" in result.output
    assert "logits" in result.output


def test_a_file_of_another_model_is_refused_by_name(tmp_path):
    import pytest

    small = random_model(registry().get("llama").tiny_config, seed=1)
    path = convert(small, tmp_path / "small.tflite", SETTINGS, "fp32", progress=None).path
    other = random_model(registry().get("llama").tiny_config.replace(num_layers=3), seed=1)
    with pytest.raises(ValueError, match="not a conversion of this model"):
        compare_blocks(path, other, TOKENS)
