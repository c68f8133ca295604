"""The runtime's packed-weight cache: reused while the model is the same, rebuilt when it changed or broke, never a
reason to fail or to compute something else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.runtime import LiteRTModel
from edge_models.runtime import weight_cache as wc

pytestmark = pytest.mark.slow  # every test here converts a model

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)
IDS = [5, 9, 17, 3, 200, 41, 7]


def _convert(path, seed=0):
    model = random_model(registry().get("llama").tiny_config, seed=seed)
    return convert(model, path, SETTINGS, "int8", progress=None).path


def _logits(model: LiteRTModel) -> np.ndarray:
    model.prefill(IDS[:-1])
    return model.decode(IDS[-1], len(IDS) - 1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(wc.ENV_DIR, str(folder))
    monkeypatch.delenv(wc.ENV_OFF, raising=False)
    return folder / "xnnpack"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _convert(tmp_path_factory.mktemp("wc") / "m.tflite")


def _without_cache(path, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setenv(wc.ENV_OFF, "1")
        model = LiteRTModel(path)
        assert model.weight_cache is None
        return _logits(model)


def test_the_cache_is_built_once_then_reused_with_the_same_outputs(tiny, cache, monkeypatch):
    plain = _without_cache(tiny, monkeypatch)
    assert not cache.exists()
    first = LiteRTModel(tiny)
    assert first.weight_cache[0] == "built" and first.weight_cache[1].parent == cache
    second = LiteRTModel(tiny)
    assert second.weight_cache == ("reused", first.weight_cache[1])
    assert np.array_equal(_logits(first), plain) and np.array_equal(_logits(second), plain)
    assert [p.name for p in cache.iterdir()] == [first.weight_cache[1].name]  # no temporary file left


def test_a_changed_model_gets_a_new_cache_and_the_old_one_goes(tmp_path, cache, monkeypatch):
    path = _convert(tmp_path / "m.tflite", seed=0)
    old = LiteRTModel(path).weight_cache[1]
    _convert(path, seed=1)  # a new version of the same file
    changed = LiteRTModel(path)
    assert changed.weight_cache[0] == "built" and changed.weight_cache[1] != old
    assert not old.exists()
    assert np.array_equal(_logits(changed), _without_cache(path, monkeypatch))


def test_a_truncated_or_garbled_cache_is_rebuilt(tiny, cache, monkeypatch):
    plain = _without_cache(tiny, monkeypatch)
    built = LiteRTModel(tiny).weight_cache[1]
    size = built.stat().st_size
    for damage in (lambda f: f.truncate(size // 3), lambda f: f.write(os.urandom(4096))):
        with open(built, "r+b") as f:
            damage(f)
        again = LiteRTModel(tiny)
        assert np.array_equal(_logits(again), plain)
        assert built.stat().st_size == size


def test_two_processes_loading_at_once_both_work(tiny, cache):
    script = textwrap.dedent(
        f"""
        from edge_models.runtime import LiteRTModel
        m = LiteRTModel({str(tiny)!r})
        m.prefill({IDS[:-1]!r})
        print(m.decode({IDS[-1]}, {len(IDS) - 1}).tobytes().hex())
        """
    )
    env = {**os.environ, wc.ENV_DIR: str(cache.parent)}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [run.communicate(timeout=300)[0].strip().splitlines()[-1] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] == outputs[1]
    assert len(list(cache.glob(f"*{wc.SUFFIX}"))) == 1 and not list(cache.glob("*.partial"))


def test_a_cache_folder_that_cannot_be_written_runs_without_it_and_says_so_once(tiny, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(wc.ENV_DIR, str(blocker / "cache"))
    monkeypatch.delenv(wc.ENV_OFF, raising=False)
    monkeypatch.setattr(wc, "_warned", set())
    plain = _without_cache(tiny, monkeypatch)
    models = [LiteRTModel(tiny), LiteRTModel(tiny)]
    assert all(m.weight_cache is None for m in models)
    assert all(np.array_equal(_logits(m), plain) for m in models)
    assert capsys.readouterr().err.count("no packed-weight cache: cannot write") == 1


def test_cli_lists_clears_and_can_turn_the_cache_off(tiny, cache, monkeypatch):
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    runner = CliRunner()
    built = LiteRTModel(tiny).weight_cache[1]
    listed = runner.invoke(cli, ["cache"])
    assert listed.exit_code == 0 and built.name in listed.output and "1 cache file(s)" in listed.output
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 1 cache file(s)" in cleared.output and not built.exists()
    monkeypatch.setenv(wc.ENV_OFF, "")  # restored after the test: the flag sets it for the process
    result = runner.invoke(cli, ["--no-weight-cache", "bench", str(tiny), "--no-speculate", "--decode-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert not cache.exists() or not list(cache.iterdir())
