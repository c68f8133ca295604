"""`edge-models bench`: what a side-by-side row compares must be the same model as the file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.tools.bench import model_shape, tflite_view

pytestmark = pytest.mark.slow  # every test here converts a model

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)


@pytest.fixture(scope="module")
def llama_file(tmp_path_factory):
    model = random_model(registry().get("llama").tiny_config)
    path = tmp_path_factory.mktemp("bench") / "llama.tflite"
    return model, convert(model, path, SETTINGS, "int8", progress=None).path


def _bench(*args):
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    return CliRunner().invoke(cli, ["bench", *map(str, args), "--no-speculate", "--decode-tokens", "4"])


def test_the_file_says_its_shape(llama_file):
    model, path = llama_file
    shape = model_shape(tflite_view(path))
    assert shape.differences(model.config) == []
    # Constants of the decode step: every weight, less what the converter folds (within 1 %).
    parameters = sum(p.numel() for p in model.parameters())
    assert abs(shape.parameters - parameters) < 0.01 * parameters, (shape.parameters, parameters)
    gemma = registry().get("gemma3-270m").config
    assert {d.split(":")[0] for d in shape.differences(gemma)} >= {"vocabulary", "layers", "hidden size"}


def test_compare_torch_runs_the_files_own_shape(llama_file):
    _, path = llama_file
    result = _bench(path, "--compare-torch", "llama")
    assert result.exit_code == 0, result.output
    torch_row = next(line for line in result.output.splitlines() if line.startswith("| pytorch eager fp32 llama"))
    assert "(tiny config, random weights)" in torch_row  # not TinyLlama's published 1.1B shape
    file_row = next(line for line in result.output.splitlines() if line.startswith("| edge-models llama.tflite"))
    assert file_row.split("|")[2].strip() == torch_row.split("|")[2].strip()  # the params column: same model


def test_compare_torch_refuses_another_shape(llama_file):
    _, path = llama_file
    result = _bench(path, "--compare-torch", "gemma3-270m")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the file is not gemma3-270m's published shape" in result.output
    assert "layers: file 2, model 18" in result.output and "--checkpoint" in result.output, result.output
