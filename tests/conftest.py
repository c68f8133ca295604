"""Shared fixtures: tiny random `transformers` checkpoints saved in the HF layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edge_models.testing import build_reference, save_reference

__all__ = ["build_reference", "save_reference"]


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


def fails_cleanly(result, *fragments) -> None:
    """A one-line error a user can act on: non-zero exit, no traceback, every fragment in the output."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def read_hf_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.fixture
def tiny_llama(tmp_path):
    """(reference model, checkpoint dir, spec) for the generic Llama spec."""
    from edge_models import registry

    spec = registry().get("llama")
    ref = build_reference(spec.tiny_hf_config, spec.reference_class)
    return ref, save_reference(ref, tmp_path / "llama"), spec


_SUCCESSOR_ODDS = torch.tensor([0.8, 0.15, 0.05])


def markov_text(length: int, vocab: int, seed: int) -> list[int]:
    """Tokens from a fixed, low-entropy bigram chain: structure a tiny model can learn."""
    rng = torch.Generator().manual_seed(1234)
    successors = torch.randint(0, vocab, (vocab, 3), generator=rng)
    step = torch.Generator().manual_seed(seed)
    out = [int(torch.randint(0, vocab, (1,), generator=step))]
    for _ in range(length - 1):
        choice = int(torch.multinomial(_SUCCESSOR_ODDS, 1, generator=step))
        out.append(int(successors[out[-1], choice]))
    return out


def trained_tiny_model(config, steps: int = 150, seq: int = 64):
    """Our decoder, trained briefly on the bigram chain so that its predictions are confident:
    quantization agreement measured on random weights says little about real models."""
    from edge_models.kinds.decoder import random_model

    model = random_model(config, seed=0, std=0.02).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for i in range(steps):
        ids = torch.tensor([markov_text(seq + 1, config.vocab_size, seed=i)])
        logits, _ = model(ids[:, :-1], torch.arange(seq), model.empty_cache(seq))
        loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
