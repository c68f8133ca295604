"""Running a converted encoder-decoder: encode once, then decode token by token through the self-attention cache,
with the decoder's samplers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_models.runtime.sampler import Sampler, SamplerConfig


class Seq2SeqError(ValueError):
    pass


def is_seq2seq_file(path: str | Path) -> bool:
    from ai_edge_litert.interpreter import Interpreter

    return any(s.startswith("encode_") for s in Interpreter(str(path)).get_signature_list())


class Seq2SeqModel:
    """The file's signatures with the caches kept between calls (copied through the signature runner)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(str(path), num_threads=threads)
        signatures = self._interpreter.get_signature_list()
        self.encode_lengths = sorted(int(m.group(1)) for s in signatures if (m := re.fullmatch(r"encode_(\d+)", s)))
        if not self.encode_lengths or "decode" not in signatures:
            raise Seq2SeqError(f"{path} has no encode_<N> and decode signatures (found: {', '.join(signatures)})")
        self._encode = {n: self._interpreter.get_signature_runner(f"encode_{n}") for n in self.encode_lengths}
        self._decode = self._interpreter.get_signature_runner("decode")
        inputs = self._decode.get_input_details()
        self.cache_len = int(inputs["k_0"]["shape"][2])
        self._self_names = sorted(n for n in inputs if re.fullmatch(r"[kv]_\d+", n))
        self._shapes = {n: tuple(inputs[n]["shape"]) for n in self._self_names}
        self._cross: dict[str, np.ndarray] = {}
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, ids: list[int]) -> None:
        """Run the encoder on `ids` and start an empty decoder cache."""
        n = next((n for n in self.encode_lengths if n >= len(ids)), None)
        if n is None:
            raise Seq2SeqError(
                f"the input is {len(ids)} tokens long; this file encodes at most {self.encode_lengths[-1]}"
            )
        padded = np.zeros((1, n), np.int32)
        mask = np.zeros((1, n), np.int32)
        padded[0, : len(ids)], mask[0, : len(ids)] = ids, 1
        self._cross = dict(self._encode[n](input_ids=padded, attention_mask=mask))
        self._cache = {name: np.zeros(self._shapes[name], np.float32) for name in self._self_names}

    def decode(self, token: int, pos: int) -> np.ndarray:
        """Logits [vocab] after decoder token `token` at position `pos`."""
        if pos >= self.cache_len:
            raise Seq2SeqError(f"the decoder's cache holds {self.cache_len} tokens")
        out = self._decode(
            tokens=np.array([[token]], np.int32), input_pos=np.array([pos], np.int32), **self._cross, **self._cache
        )
        self._cache = {name: out[name] for name in self._self_names}
        return out["logits"][0, -1]


def generate_ids(
    model: Seq2SeqModel,
    ids: list[int],
    max_tokens: int,
    start_id: int,
    stop_ids: set[int],
    sampler: SamplerConfig | None = None,
) -> Iterator[int]:
    """Tokens of the answer to input `ids` (the stop token not included)."""
    sample = Sampler(sampler or SamplerConfig())
    model.encode(ids)
    token, history = start_id, []
    for pos in range(min(max_tokens, model.cache_len)):
        token = sample(model.decode(token, pos), history)
        if token in stop_ids:
            return
        history.append(token)
        yield token
