"""Speculative decoding's draft side: prompt lookup, and the back-off that keeps it from costing time.

Prompt lookup proposes the tokens that followed the latest occurrence of the text's last few tokens (an n-gram
match in the prompt and what has been generated so far): summaries, rewrites, code edits and extractions copy long
runs from their input. The target model scores the current token and the draft in one `verify_<K>` call; every
drafted token its own choice agrees with is a decode step saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prompt_lookup(history: list[int], max_draft: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to `max_draft` tokens that followed the most recent earlier occurrence of the longest suffix n-gram."""
    if max_draft <= 0:
        return []
    n_tokens = len(history)
    for n in range(min(max_ngram, n_tokens - 1), min_ngram - 1, -1):
        tail = history[-n:]
        # The most recent match wins: nearby text predicts best.
        for start in range(n_tokens - n - 1, -1, -1):
            if history[start : start + n] == tail:
                follow = history[start + n : start + n + max_draft]
                if follow:
                    return follow
    return []


@dataclass
class BackOff:
    """Pauses drafting while it does not pay: a verify call costs about `cost_ratio` decode steps, so a round must
    yield more tokens than that on average. After a losing stretch drafting pauses for `cooldown` steps, doubling
    each time it loses again (up to `max_cooldown`), and resetting when it pays."""

    cost_ratio: float = 1.3
    window: int = 4
    max_cooldown: int = 64
    cooldown: int = 8
    paused: int = 0
    recent: list[int] = field(default_factory=list)

    def allows(self) -> bool:
        if self.paused > 0:
            self.paused -= 1
            return False
        return True

    def record(self, tokens_per_round: int) -> None:
        self.recent = [*self.recent[-(self.window - 1) :], tokens_per_round]
        if len(self.recent) < self.window:
            return
        if sum(self.recent) / len(self.recent) < self.cost_ratio:
            self.paused = self.cooldown
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self.recent = []
        else:
            self.cooldown = 8
