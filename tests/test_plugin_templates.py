"""The plugin templates in examples/, as a third party starts from them: each one, laid out as its installed wheel
would be (its package beside a dist-info directory made from its pyproject.toml) on a child process's path, is found
through its entry point by `edge-models list` and verified against transformers by `edge-models verify --tiny`.
Nothing is installed into the environment running the tests."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_models import UnsupportedConfigError

tomllib = pytest.importorskip("tomllib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# (template folder, the models it registers)
TEMPLATES = [
    pytest.param("plugin-template", ("example", "example-1b"), id="decoder"),
    pytest.param("encoder-plugin-template", ("example-encoder", "example-encoder-small"), id="encoder"),
]


def install(template: Path, site: Path) -> str:
    """Into `site`, what installing `template`'s wheel puts into site-packages: its packages and a dist-info
    directory holding its name, version and entry points. Returns "name version", as `edge-models list` names it."""
    pyproject = tomllib.loads((template / "pyproject.toml").read_text())
    project = pyproject["project"]
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        shutil.copytree(template / package, site / Path(package).name)
    dist_info = site / f"{re.sub(r'[-_.]+', '_', project['name'])}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (dist_info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
            for group, points in groups.items()
        )
    )
    return f"{project['name']} {project['version']}"


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "edge_models.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "models"), TEMPLATES)
def test_template_is_found_through_its_entry_point_and_verifies(folder, models, tmp_path):
    provider = install(EXAMPLES / folder, tmp_path)
    listed = run_cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for model in models:
        line = next((line for line in listed.stdout.splitlines() if line.split()[:1] == [model]), None)
        assert line is not None, f"{model} not in `edge-models list`:\n{listed.stdout}"
        assert provider in line, line
    # Each model on its own tiny config: between them they take every path of the template's config reader.
    for model in models:
        verified = run_cli(tmp_path, "verify", model, "--tiny", "--tokens", "8")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.rstrip().endswith("PASSED"), verified.stdout


def _template_module(folder: str, package: str):
    """The template's module, imported from its folder under a name of its own (nothing on sys.path changes)."""
    path = EXAMPLES / folder / "src" / package / "__init__.py"
    spec = importlib.util.spec_from_file_location(f"_template_{package}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decoder_template_names_every_unsupported_setting_at_once():
    example = _template_module("plugin-template", "edge_models_example")
    config = example.example_config_from_hf(example.TINY_EXAMPLE)
    assert (config.attention.head_dim, config.attention.qkv_bias, config.attention.out_bias) == (48, True, True)
    assert config.mlp.bias and not config.tie_embeddings
    assert example.example_config_from_hf(example.EXAMPLE_1B).rope.scaling["rope_type"] == "llama3"
    bad = {
        **example.EXAMPLE_1B,
        "hidden_act": "gelu",
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
        "attention_bias": "yes",
        "pretraining_tp": 2,
    }
    with pytest.raises(UnsupportedConfigError, match="4 unsupported setting") as error:
        example.example_config_from_hf(bad)
    for culprit in ("'yarn'", "'hidden_act' = 'gelu'", "'attention_bias' = 'yes'", "'pretraining_tp' = 2"):
        assert culprit in str(error.value)


def test_encoder_template_names_every_unsupported_setting_at_once():
    example = _template_module("encoder-plugin-template", "edge_models_example_encoder")
    config = example.example_encoder_config_from_hf(example.TINY_EXAMPLE_ENCODER)
    assert (config.mlp.activation, config.type_vocab_size, config.norm.eps) == ("gelu_tanh", 1, 1e-5)
    bad = {
        **example.EXAMPLE_ENCODER_SMALL,
        "vocab_size": None,
        "hidden_size": 100,
        "hidden_act": "relu",
        "position_embedding_type": "relative_key",
        "is_decoder": True,
    }
    with pytest.raises(UnsupportedConfigError, match="5 unsupported setting") as error:
        example.example_encoder_config_from_hf(bad)
    for culprit in ("'vocab_size'", "'hidden_size' = 100", "'relu'", "'relative_key'", "'is_decoder' = True"):
        assert culprit in str(error.value)
