"""Fixtures and hooks only; helpers that test modules import are in helpers/."""

from __future__ import annotations

import pytest

from edge_models.testing import build_reference, save_reference


@pytest.fixture(scope="session", autouse=True)
def _weight_cache_of_this_run(tmp_path_factory):
    """Packed-weight caches go to a folder of this test run, never to the user's ~/.cache."""
    import os

    from edge_models.runtime.weight_cache import ENV_DIR

    os.environ[ENV_DIR] = str(tmp_path_factory.mktemp("edge-models-cache"))


@pytest.fixture(scope="module")
def run():
    """`run(*args)`: the `edge-models` command as a user runs it, with every plugin's verbs."""
    from click.testing import CliRunner

    from edge_models import cli as cli_module

    cli_module._add_builtin_groups()
    cli_module._load_plugin_commands()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli_module.cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def tiny_llama(tmp_path):
    """(reference model, checkpoint dir, spec) for the generic Llama spec."""
    from edge_models import registry

    spec = registry().get("llama")
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    return ref, save_reference(ref, tmp_path / "llama"), spec
