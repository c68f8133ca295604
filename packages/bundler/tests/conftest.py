"""Shared fixtures: one tiny tokenizer and one tiny converted model (converted once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spm_util import train_sentencepiece

VOCAB = 256


def pytest_collection_modifyitems(items):
    """A test of this folder that needs the converted model is slow: converting it takes most of a minute on 2 cores."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and "converted" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _weight_cache_of_this_run(tmp_path_factory):
    """Packed-weight caches go to a folder of this test run, never to the user's ~/.cache."""
    import os

    from edge_models.runtime.weight_cache import ENV_DIR

    os.environ[ENV_DIR] = str(tmp_path_factory.mktemp("edge-models-cache"))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundler")


@pytest.fixture(scope="session")
def tokenizer(workdir) -> Path:
    return train_sentencepiece(workdir / "tokenizer.model", VOCAB)


@pytest.fixture(scope="session")
def converted(workdir, tokenizer) -> tuple[Path, Path]:
    """(tiny .tflite, .task) made in one go by `edge-models convert llama --tiny --bundle`.

    The llama plugin's tiny config has a 256-entry vocabulary, the size of our tokenizer.
    """
    from click.testing import CliRunner
    from edge_models.cli import _load_plugin_commands, cli
    from edge_models.plugins import registry

    assert registry().get("llama").tiny_config.vocab_size == VOCAB
    _load_plugin_commands()
    tflite, task = workdir / "tiny.tflite", workdir / "tiny.task"
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            "llama",
            "--tiny",
            "-o",
            str(tflite),
            "--prefill",
            "8",
            "--kv-cache",
            "64",
            "--bundle",
            str(task),
            "--tokenizer",
            str(tokenizer),
        ],
    )
    assert result.exit_code == 0, result.output
    assert tflite.is_file() and task.is_file()
    return tflite, task


@pytest.fixture(scope="session")
def tiny_tflite(converted) -> Path:
    return converted[0]


@pytest.fixture(scope="session")
def tiny_task(converted) -> Path:
    return converted[1]
