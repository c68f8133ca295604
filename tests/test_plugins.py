"""The plugin system: discovery through entry points, duplicates, unknown names."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pluggy
import pytest
import tomllib

from edge_models import DuplicateModelError, UnknownModelError, hookimpl, hookspecs, registry
from edge_models.plugins import ModelRegistry

REPO = Path(__file__).resolve().parents[1]
EDGE_MODELS = [sys.executable, "-m", "edge_models.cli"]


def _pm(*plugins: tuple[str, object]) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    return pm


def _plugin(spec) -> types.SimpleNamespace:
    @hookimpl
    def register_models(register):
        register(spec)

    return types.SimpleNamespace(register_models=register_models)


def test_builtin_plugins_are_discovered_through_entry_points():
    names = registry().names()
    for expected in ("gemma3-270m", "gemma-2b", "gemma2-2b", "tinyllama-1.1b", "llama", "phi-2"):
        assert expected in names
    providers = {e.spec.name: e.provider for e in registry().entries()}
    assert providers["phi-2"].startswith("edge-models-phi2 ")


def test_duplicate_names_error_names_both_plugins():
    spec = registry().get("llama")
    pm = _pm(("first-plugin", _plugin(spec)), ("second-plugin", _plugin(spec)))
    with pytest.raises(DuplicateModelError) as err:
        ModelRegistry(pm)
    assert "'llama'" in str(err.value)
    assert "first-plugin" in str(err.value) and "second-plugin" in str(err.value)


def test_registering_something_else_is_a_clear_error():
    pm = _pm(("bad-plugin", _plugin({"name": "x"})))
    with pytest.raises(TypeError, match="bad-plugin registered .* expected an edge_models.ModelSpec"):
        ModelRegistry(pm)


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError, match="unknown model 'gemma9'; known models: .*gemma3-270m"):
        registry().get("gemma9")
    with pytest.raises(UnknownModelError, match="install a plugin"):
        ModelRegistry(_pm()).get("gemma3-270m")


def test_list_without_plugins_says_how_to_install_one(monkeypatch):
    from click.testing import CliRunner

    from edge_models import cli

    monkeypatch.setattr("edge_models.plugins.plugin_manager", lambda: _pm())
    result = CliRunner().invoke(cli.cli, ["list"])
    assert result.exit_code == 0
    assert "pip install edge-models-gemma" in result.output


def _as_installed(project: Path, site: Path) -> list[str]:
    """The sys.path entries under which `project` looks installed: its packages' source folders, and in `site` the
    `<dist>.dist-info/` (METADATA, entry_points.txt) an installer writes from its pyproject.toml.
    importlib.metadata finds distributions in any sys.path entry, so nothing goes into the running environment."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    name, version = meta["project"]["name"], meta["project"]["version"]
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = meta["project"]["entry-points"]
    (dist_info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items())
    )
    packages = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return [str(site), *sorted({str((project / p).parent) for p in packages})]


@pytest.mark.slow
def test_plugins_can_add_quantization_recipes(monkeypatch):
    from edge_models.quantize import recipes

    @hookimpl
    def register_quant_recipes(register):
        register("int8-block64", "int8 in blocks of 64", recipes.Scheme("", 8, "dynamic", 64))

    plugin = types.SimpleNamespace(register_quant_recipes=register_quant_recipes)
    monkeypatch.setattr("edge_models.plugins.plugin_manager", lambda: _pm(("recipe-plugin", plugin)))
    monkeypatch.setattr(recipes, "_plugins_asked", False)
    monkeypatch.setattr(recipes, "_extra_schemes", {})
    assert recipes.all_schemes()["int8-block64"].description == "int8 in blocks of 64"
    assert recipes.parse_recipe("attention=int8-block64").parts == (("default", "int8"), ("attention", "int8-block64"))
