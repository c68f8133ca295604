"""Token samplers over a logits vector: greedy, temperature, top-k, top-p, min-p, repetition penalty."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplerConfig:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0  # 0 means no limit
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


class Sampler:
    """Picks the next token; seeded, so the same config and logits give the same tokens."""

    def __init__(self, config: SamplerConfig, vocab_limit: int | None = None) -> None:
        self.config = config
        # Logits past the tokenizer's vocabulary belong to padded embedding rows.
        self.vocab_limit = vocab_limit
        self.rng = np.random.default_rng(config.seed)

    def distribution(self, logits: np.ndarray, history: list[int] | None = None) -> np.ndarray | None:
        """The probabilities a token is drawn from, after every filter; None when greedy (no distribution)."""
        cfg = self.config
        x = self._penalised(logits, history)
        if cfg.temperature == 0:
            return None
        x = x / cfg.temperature
        if cfg.top_k and cfg.top_k < x.size:
            kth = np.partition(x, -cfg.top_k)[-cfg.top_k]
            x[x < kth] = -np.inf
        probs = np.exp(x - np.max(x))
        probs /= probs.sum()
        if cfg.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = order[: int(np.searchsorted(cumulative, cfg.top_p)) + 1]
            mask = np.zeros_like(probs, dtype=bool)
            mask[keep] = True
            probs[~mask] = 0.0
        if cfg.min_p > 0:
            probs[probs < cfg.min_p * probs.max()] = 0.0
        return probs / probs.sum()

    def _penalised(self, logits: np.ndarray, history: list[int] | None) -> np.ndarray:
        cfg = self.config
        x = np.array(logits, dtype=np.float64).reshape(-1)
        if self.vocab_limit is not None and self.vocab_limit < x.size:
            x[self.vocab_limit :] = -np.inf
        if cfg.repetition_penalty != 1.0 and history:
            seen = np.unique(np.asarray(history, dtype=np.int64))
            seen = seen[seen < x.size]
            vals = x[seen]
            x[seen] = np.where(vals > 0, vals / cfg.repetition_penalty, vals * cfg.repetition_penalty)
        return x

    def __call__(self, logits: np.ndarray, history: list[int] | None = None) -> int:
        probs = self.distribution(logits, history)
        if probs is None:
            return int(np.argmax(self._penalised(logits, history)))
        return int(self.rng.choice(probs.size, p=probs))

    def check_draft(self, logits: np.ndarray, history: list[int] | None, draft: int) -> int:
        """The next token given a drafted one: `draft` itself when accepted, else a replacement.

        Greedy: the argmax (accepted when it is the draft). Sampling: speculative sampling's rule for a draft that
        was proposed with certainty (prompt lookup): accept with probability p(draft), else draw from p with the
        draft removed; the token is then distributed exactly as `__call__` would draw it."""
        probs = self.distribution(logits, history)
        if probs is None:
            return int(np.argmax(self._penalised(logits, history)))
        if self.rng.random() < probs[draft]:
            return draft
        rest = probs.copy()
        rest[draft] = 0.0
        total = rest.sum()
        if total <= 0:
            return draft
        return int(self.rng.choice(rest.size, p=rest / total))
