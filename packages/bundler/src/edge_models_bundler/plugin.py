"""The entry point core loads (group `edge_models`): the `bundle` verb, and the bundle writer core calls."""

from __future__ import annotations

import edge_models


@edge_models.hookimpl
def register_commands(cli) -> None:
    from edge_models_bundler.cli import bundle

    cli.add_command(bundle)


@edge_models.hookimpl
def register_bundle_writer(register) -> None:
    from edge_models_bundler.api import write_requested

    register(write_requested)
