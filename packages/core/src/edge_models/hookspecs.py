"""The plugin contract. Plugins implement these with `@edge_models.hookimpl`."""

from __future__ import annotations

import pluggy

PROJECT = "edge_models"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Call `register(ModelSpec(...))` once for each model the plugin offers."""


@hookspec
def register_encoders(register):
    """Call `register(EncoderSpec(...))` once for each encoder (embedding) model the plugin offers."""


@hookspec
def register_seq2seq(register):
    """Call `register(Seq2SeqSpec(...))` once for each encoder-decoder model the plugin offers."""


@hookspec
def register_commands(cli):
    """Add verbs to the `edge-models` click group `cli`."""


@hookspec
def register_quant_recipes(register):
    """Call `register(name, description, scheme)` with an `edge_models.quantize.Scheme` for each extra recipe."""


@hookspec
def register_bundle_writer(register):
    """Call `register(write)` with `write(BundleRequest) -> Path`, the function that writes a bundle (the bundler
    plugin does); `convert --bundle` and the demo bundle through it."""
