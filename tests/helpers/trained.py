"""A tiny decoder trained briefly on a low-entropy token chain, for checks that random weights make meaningless."""

from __future__ import annotations

import torch

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
