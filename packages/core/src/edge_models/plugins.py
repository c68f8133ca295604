"""Plugin discovery (entry-point group `edge_models`) and the model registry."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import pluggy

import edge_models.hookspecs as hookspecs
from edge_models.spec import BundleRequest, EncoderSpec, ModelSpec, Seq2SeqSpec


class UnknownModelError(LookupError):
    pass


class DuplicateModelError(ValueError):
    pass


Spec = TypeVar("Spec", ModelSpec, EncoderSpec, Seq2SeqSpec)


@dataclass(frozen=True)
class Registered(Generic[Spec]):
    spec: Spec
    provider: str  # "distribution version", or the plugin's name when not installed


def _provider(pm: pluggy.PluginManager, plugin: object) -> str:
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return f"{dist.project_name} {dist.version}"
    return pm.get_name(plugin) or repr(plugin)


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


class ModelRegistry(Generic[Spec]):
    """The specs of one kind that plugins register through its hook: decoders (`register_models`, ModelSpec),
    encoders (`register_encoders`, EncoderSpec) or encoder-decoders (`register_seq2seq`, Seq2SeqSpec)."""

    def __init__(self, pm: pluggy.PluginManager, hook: str = "register_models", kind: type[Spec] = ModelSpec) -> None:
        self._models: dict[str, Registered[Spec]] = {}
        self._kind = kind
        for impl in getattr(pm.hook, hook).get_hookimpls():
            provider = _provider(pm, impl.plugin)
            impl.function(register=functools.partial(self._add, provider=provider))

    def _add(self, spec: Spec, *, provider: str) -> None:
        if not isinstance(spec, self._kind):
            raise TypeError(f"{provider} registered {spec!r}, expected an edge_models.{self._kind.__name__}")
        if spec.name in self._models:
            other = self._models[spec.name].provider
            raise DuplicateModelError(
                f"model {spec.name!r} is registered twice: by {other} and by {provider}; "
                "uninstall one of the two plugins"
            )
        self._models[spec.name] = Registered(spec, provider)

    def names(self) -> list[str]:
        return sorted(self._models)

    def entries(self) -> list[Registered[Spec]]:
        return [self._models[n] for n in self.names()]

    def get(self, name: str) -> Spec:
        try:
            return self._models[name].spec
        except KeyError:
            known = ", ".join(self.names()) or "none (install a plugin, e.g. `pip install edge-models-gemma`)"
            raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None

    def for_architecture(self, architectures: list[str]) -> Spec:
        """The spec for a config.json's `architectures`; the generic one wins over presets."""
        matches = [r.spec for r in self._models.values() if set(r.spec.architectures) & set(architectures)]
        if not matches:
            supported = sorted({a for r in self._models.values() for a in r.spec.architectures})
            raise UnknownModelError(
                f"no registered model accepts architectures {architectures}; "
                f"supported: {', '.join(supported) or 'none (no plugin installed)'}"
            )
        # Prefer the spec whose config_from_hf is most general: the one named after its family.
        for spec in matches:
            if spec.name == spec.family:
                return spec
        return matches[0]


def registry(pm: pluggy.PluginManager | None = None) -> ModelRegistry[ModelSpec]:
    return ModelRegistry(pm or plugin_manager())


def encoder_registry(pm: pluggy.PluginManager | None = None) -> ModelRegistry[EncoderSpec]:
    return ModelRegistry(pm or plugin_manager(), "register_encoders", EncoderSpec)


def seq2seq_registry(pm: pluggy.PluginManager | None = None) -> ModelRegistry[Seq2SeqSpec]:
    return ModelRegistry(pm or plugin_manager(), "register_seq2seq", Seq2SeqSpec)


def bundle_writer(pm: pluggy.PluginManager | None = None) -> Callable[[BundleRequest], Path] | None:
    """The bundle writer a plugin registered, or None when no bundler is installed; two are an error naming both."""
    pm = pm or plugin_manager()
    writers: list[tuple[str, Callable]] = []
    for impl in pm.hook.register_bundle_writer.get_hookimpls():
        impl.function(register=lambda write, provider=_provider(pm, impl.plugin): writers.append((provider, write)))
    if len(writers) > 1:
        raise DuplicateModelError(
            f"two bundle writers are installed ({' and '.join(p for p, _ in writers)}); uninstall one of them"
        )
    return writers[0][1] if writers else None
