"""The `edge-models` command: one module per verb group; plugins add verbs through the `register_commands` hook."""

from __future__ import annotations

from edge_models.cli import check, encoders, explore, models, run  # noqa: F401 - importing a verb module registers its verbs
from edge_models.cli.base import UserError, cli
from edge_models.plugins import plugin_manager


def _add_builtin_groups() -> None:
    from edge_models.cli.cache import cache_group
    from edge_models.cli.lora import lora_group
    from edge_models.cli.tokenizer import tokenizer_group

    cli.add_command(tokenizer_group)
    cli.add_command(lora_group)
    cli.add_command(cache_group)


def _load_plugin_commands() -> None:
    plugin_manager().hook.register_commands(cli=cli)


def main() -> None:
    _add_builtin_groups()
    _load_plugin_commands()
    cli()


__all__ = ["UserError", "cli", "main"]
