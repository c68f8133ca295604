"""A converted model run through ai-edge-litert: prefill and decode over a KV cache it owns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_models.tflite_check import TFLiteInfo, check_tflite


class LiteRTModel:
    def __init__(self, model: str | Path | bytes, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from edge_models.tflite_check import TFLiteCheckError, os_threads

        threads = threads or os_threads()
        label = "<bytes>" if isinstance(model, (bytes, bytearray)) else str(model)
        try:
            if isinstance(model, (bytes, bytearray)):
                self._it = Interpreter(model_content=bytes(model), num_threads=threads)
            else:
                self._it = Interpreter(model_path=str(model), num_threads=threads)
        except Exception as e:
            raise TFLiteCheckError(f"{label}: not a loadable .tflite model ({e})") from None
        self.info: TFLiteInfo = check_tflite(label, interpreter=self._it)
        self._runners = {name: self._it.get_signature_runner(name) for name in self.info.signatures}
        decode_inputs = self._runners["decode"].get_input_details()
        self._cache_spec = {
            name: (tuple(d["shape"]), d["dtype"]) for name, d in decode_inputs.items() if name.startswith("kv_cache_")
        }
        self.reset()

    @property
    def kv_len(self) -> int:
        return self.info.kv_len

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size

    def reset(self) -> None:
        self.cache = {name: np.zeros(shape, dtype) for name, (shape, dtype) in self._cache_spec.items()}

    def _run(self, signature: str, tokens: np.ndarray, positions: np.ndarray) -> dict:
        out = self._runners[signature](tokens=tokens, input_pos=positions, **self.cache)
        for name in self.cache:
            self.cache[name] = out[name]
        return out

    def _pick_prefill(self, remaining: int, start: int) -> tuple[str, int] | None:
        """Smallest signature that takes all remaining tokens, else the largest full chunk.

        The cache write is one slice of the signature's full length, so it must fit
        inside the cache or the runtime would clamp it onto earlier entries.
        """
        fitting = [(n, s) for s, n in self.info.prefill_lengths.items() if start + n <= self.kv_len]
        if not fitting:
            return None
        whole = sorted(f for f in fitting if f[0] >= remaining)
        if whole:
            return whole[0][1], whole[0][0]
        n, s = max(fitting)
        return s, n

    def prefill(self, tokens: list[int], start: int = 0) -> None:
        """Write `tokens` at positions start.. into the cache; no logits are needed."""
        if start + len(tokens) > self.kv_len:
            raise ValueError(f"{start + len(tokens)} positions do not fit the KV cache of {self.kv_len}")
        pos = start
        while pos < start + len(tokens):
            chunk = tokens[pos - start :]
            picked = self._pick_prefill(len(chunk), pos)
            if picked is None:
                # Too close to the end of the cache for any prefill slice: decode one by one.
                self.decode(chunk[0], pos)
                pos += 1
                continue
            signature, length = picked
            take = min(length, len(chunk))
            # Padding like LiteRT-LM's: zeros past the prompt; those slots are overwritten later.
            ids = np.zeros((1, length), np.int32)
            ids[0, :take] = chunk[:take]
            positions = np.zeros(length, np.int32)
            positions[:take] = np.arange(pos, pos + take, dtype=np.int32)
            self._run(signature, ids, positions)
            pos += take

    def decode(self, token: int, pos: int) -> np.ndarray:
        """Logits [vocab] for `token` at position `pos`."""
        if pos >= self.kv_len:
            raise ValueError(f"position {pos} is past the KV cache length {self.kv_len}")
        out = self._run("decode", np.array([[token]], np.int32), np.array([pos], np.int32))
        return out["logits"].reshape(-1)
