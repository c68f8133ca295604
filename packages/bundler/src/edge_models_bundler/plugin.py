"""The entry point core loads (group `edge_models`): adds the `bundle` verb to the CLI."""

from __future__ import annotations

import edge_models


@edge_models.hookimpl
def register_commands(cli) -> None:
    from edge_models_bundler.cli import bundle

    cli.add_command(bundle)
