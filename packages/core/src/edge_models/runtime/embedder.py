"""Sentence embeddings from a converted encoder (`embed_<N>` signatures): tokenize, pick the shortest signature
that holds the text, pad, run, and compare."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


class EmbedError(ValueError):
    pass


class Embedder:
    def __init__(self, path: str | Path, tokenizer: str | Path | None = None, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter
        from tokenizers import Tokenizer

        path = Path(path)
        tokenizer = Path(tokenizer) if tokenizer else path.parent / "tokenizer.json"
        if not tokenizer.is_file():
            raise EmbedError(f"no tokenizer: {tokenizer} does not exist (give --tokenizer tokenizer.json)")
        self._interpreter = Interpreter(str(path), num_threads=threads)
        signatures = self._interpreter.get_signature_list()
        self.lengths = sorted(int(m.group(1)) for s in signatures if (m := re.fullmatch(r"embed_(\d+)", s)))
        if not self.lengths:
            raise EmbedError(f"{path} has no embed_<N> signatures (found: {', '.join(signatures) or 'none'})")
        self._runners = {n: self._interpreter.get_signature_runner(f"embed_{n}") for n in self.lengths}
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        # The file's own padding and truncation settings (sentence-transformers ships 128-token padding) would hide
        # a text that does not fit; the signatures set the lengths here.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    @property
    def max_tokens(self) -> int:
        return self.lengths[-1]

    def token_ids(self, text: str) -> list[int]:
        """The text's ids with the tokenizer's own special tokens ([CLS] ... [SEP] for BERT)."""
        return self._tokenizer.encode(text, add_special_tokens=True).ids

    def embed(self, texts: list[str]) -> np.ndarray:
        """One pooled embedding per text, [len(texts), D]. A text longer than the longest signature is refused."""
        out = []
        for k, text in enumerate(texts):
            ids = self.token_ids(text)
            if len(ids) > self.max_tokens:
                raise EmbedError(
                    f"text {k + 1} is {len(ids)} tokens long; this file embeds at most {self.max_tokens} "
                    f"(signatures {', '.join(f'embed_{n}' for n in self.lengths)}). Shorten or split it, or convert "
                    "with longer --embed-lengths"
                )
            out.append(self.embed_ids(ids))
        return np.stack(out)

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        n = next(n for n in self.lengths if n >= len(ids))
        padded = np.zeros((1, n), np.int32)
        mask = np.zeros((1, n), np.int32)
        padded[0, : len(ids)] = ids
        mask[0, : len(ids)] = 1
        return self._runners[n](input_ids=padded, attention_mask=mask)["embedding"][0]


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    return unit @ unit.T
