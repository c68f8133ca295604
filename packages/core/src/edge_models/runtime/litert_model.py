"""A converted model run through ai-edge-litert: prefill and decode over a KV cache it owns.

Two engines. `compiled` (the default) uses LiteRT's CompiledModel with each layer's cache bound as
both input and output buffer of every signature, so the cache is updated in place and never
crosses into Python. `interpreter` is the plain signature-runner loop, which copies the whole cache
in and out through numpy at every step; it stays as the baseline the benchmarks compare against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_models.tflite.checks import STATE_STEPS_PREFIX, TFLiteCheckError, TFLiteInfo, check_tflite, os_threads

ENGINES = ("compiled", "interpreter")

# XNNPACK delegate flags as LiteRT-LM 0.18 sets them for its CPU backend (its default 0x3 | 0x48; values from
# tensorflow/lite/delegates/xnnpack/xnnpack_delegate.h). DYNAMIC_FULLY_CONNECTED is the one that matters: with one
# KV head (Gemma 3 270M) attention's products with the cache become fully-connected ops whose filter is not a
# constant, and without the flag they fall back to the builtin kernels: that model decoded ~30% slower and its int8
# greedy text left LiteRT-LM's at the first near-tie (benchmarks/results/litert_lm_conformance_gemma3_270m.md).
XNNPACK_FLAG_QS8 = 0x1
XNNPACK_FLAG_QU8 = 0x2
XNNPACK_FLAG_DYNAMIC_FULLY_CONNECTED = 0x8
XNNPACK_FLAG_ENABLE_LATEST_OPERATORS = 0x40
XNNPACK_FLAGS = (
    XNNPACK_FLAG_QS8 | XNNPACK_FLAG_QU8 | XNNPACK_FLAG_DYNAMIC_FULLY_CONNECTED | XNNPACK_FLAG_ENABLE_LATEST_OPERATORS
)


class LiteRTModel:
    def __init__(
        self,
        model: str | Path | bytes,
        threads: int | None = None,
        engine: str = "compiled",
        windows: bool = True,
        identity: str | None = None,
    ) -> None:
        """`windows=False` runs `prefill_<N>` and `decode` only, ignoring the windowed signatures (`step_<W>`,
        `fill_<N>_<W>`), for comparisons. `identity` names a model given as bytes for its packed-weight cache
        (`weight_cache.file_identity` of the bundle it came from); without it the bytes are hashed."""
        from ai_edge_litert.interpreter import Interpreter

        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
        self.engine = engine
        self.threads = threads or os_threads()
        in_memory = isinstance(model, (bytes, bytearray))
        label = "<bytes>" if in_memory else str(model)
        try:
            if in_memory:
                it = Interpreter(model_content=bytes(model), num_threads=self.threads)
            else:
                it = Interpreter(model_path=str(model), num_threads=self.threads)
        except Exception as e:
            raise TFLiteCheckError(f"{label}: not a loadable .tflite model ({e})") from None
        self.info: TFLiteInfo = check_tflite(label, interpreter=it)
        decode_inputs = it.get_signature_runner("decode").get_input_details()
        self._cache_spec = {
            name: (tuple(d["shape"]), d["dtype"]) for name, d in decode_inputs.items() if name.startswith("kv_cache_")
        }
        # LoRA slots (files converted with --lora-rank): zeros until `set_lora` (zeros = the base model).
        self.lora_spec = {n: tuple(d["shape"]) for n, d in decode_inputs.items() if n.startswith("lora_")}
        self._logit_signatures = {"decode", *self.info.decode_windows, *self.info.verify}
        if self.info.prefill_logits:
            self._logit_signatures |= {*self.info.prefill_lengths, *self.info.prefill_windows}
        # Smallest window first: a step uses the first window that holds every position it writes.
        self._steps = sorted((w, name) for name, w in self.info.decode_windows.items()) if windows else []
        self._fills = sorted((w, n, name) for name, (n, w) in self.info.prefill_windows.items()) if windows else []
        # (K, W or kv_len, name), smallest first: a verify uses the first that holds its tokens and positions.
        self._verifies = sorted(
            (k, w or self.info.kv_len, name) for name, (k, w) in self.info.verify.items() if windows or w is None
        )
        # (W or kv_len, K, name), smallest window first: shortlist decoding picks like `decode` picks a step.
        self._shortlists = sorted(
            (w or self.info.kv_len, k, name) for name, (k, w) in self.info.shortlists.items() if windows or w is None
        )
        if engine == "interpreter":
            self._runners = {name: it.get_signature_runner(name) for name in self.info.signatures}
        else:
            del it  # the compiled model keeps its own copy
            self._compile(model if in_memory else str(model), identity)
        if engine == "interpreter":
            self.load_seconds, self.weight_cache = 0.0, None
        # (verify signature, tokens it scored) of the last verify call, until `keep_verified` settles the state.
        self._verified: tuple[str, int] | None = None
        self._lora: dict[str, np.ndarray] = {}
        if self.lora_spec:
            self.set_lora(None)
        self.reset()

    @classmethod
    def from_bundle(cls, bundle, threads: int | None = None, engine: str = "compiled", windows: bool = True):
        """The model of a read bundle (`runtime.read_bundle`): mapped from its copy in the cache when one can be
        written, else from its bytes."""
        import edge_models.runtime.weight_cache as weight_cache

        mapped = weight_cache.bundle_model_file(bundle.path, bundle.model_span)
        if mapped is not None:
            return cls(mapped, threads, engine, windows)
        return cls(bundle.tflite, threads, engine, windows, identity=weight_cache.file_identity(bundle.path))

    def _compile(self, model: str | bytes, identity: str | None) -> None:
        import time

        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import Options

        import edge_models.runtime.weight_cache as weight_cache

        in_memory = isinstance(model, (bytes, bytearray))
        if identity is None:
            identity = weight_cache.bytes_identity(model) if in_memory else weight_cache.file_identity(model)
        options = Options()
        options.cpu_options.num_threads = self.threads
        options.cpu_options.xnnpack_flags = XNNPACK_FLAGS
        started = time.perf_counter()
        with weight_cache.weight_cache(identity, XNNPACK_FLAGS) as cache:
            if cache.path is not None:
                options.cpu_options.xnnpack_weight_cache_path = str(cache.path)
            make = CompiledModel.from_buffer if in_memory else CompiledModel.from_file
            self._cm = make(bytes(model) if in_memory else model, options=options)
        self.load_seconds = time.perf_counter() - started
        self.weight_cache = None if cache.final is None else ("built" if cache.built else "reused", cache.final)
        self._kv_buffers = {name: self._cm.create_input_buffer_by_name("decode", name) for name in self._cache_spec}
        self._lora_buffers = {n: self._cm.create_input_buffer_by_name("decode", n) for n in self.lora_spec}
        self._io = {}
        for sig in self.info.signatures:
            inputs = {n: self._cm.create_input_buffer_by_name(sig, n) for n in ("tokens", "input_pos")}
            names = (
                ("ids", "logits")
                if sig in self.info.shortlists
                else ("logits",)
                if sig in self._logit_signatures
                else ()
            )
            if sig in self.info.verify:
                names = (*names, *(_steps_name(n) for n in self.info.state_inputs))
            outputs = {n: self._cm.create_output_buffer_by_name(sig, n) for n in names}
            self._io[sig] = (inputs, outputs)

    @property
    def shortlist_size(self) -> int:
        """K of the file's shortlist signatures (`convert --shortlist K`); 0: none."""
        return self._shortlists[0][1] if self._shortlists else 0

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes of the KV cache this model holds (every layer's K and V)."""
        return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in self._cache_spec.values())

    @property
    def has_state(self) -> bool:
        """Whether layers carry state beside the KV cache (`kv_cache_c_<i>`): it is updated in place like the
        cache, but holds the last tokens run, so it continues only from exactly where the last call ended."""
        return bool(self.info.state_inputs)

    @property
    def kv_len(self) -> int:
        return self.info.kv_len

    @property
    def vocab_size(self) -> int:
        return self.info.vocab_size

    def set_lora(self, matrices: dict[str, np.ndarray] | None) -> None:
        """Bind an adapter's matrices to the LoRA inputs (`lora.pack`, or an adapter file read by
        `tflite.lora.read_adapter_file`); None: zeros, the base model."""
        if not self.lora_spec:
            raise ValueError("this file has no LoRA inputs (convert it with --lora-rank R)")
        matrices = matrices or {}
        unknown = sorted(set(matrices) - set(self.lora_spec))
        if unknown:
            raise ValueError(f"the adapter has matrices this file does not take: {', '.join(unknown[:4])}")
        self._lora = {}
        for name, shape in self.lora_spec.items():
            value = np.ascontiguousarray(matrices.get(name, np.zeros(shape, np.float32)), dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"adapter matrix {name} has shape {list(value.shape)}, the file takes {list(shape)}")
            self._lora[name] = value
            if self.engine != "interpreter":
                self._lora_buffers[name].write(value)

    def reset(self) -> None:
        """An empty cache. Not needed for correctness (unwritten slots are masked), but keeps runs identical."""
        zeros = {name: np.zeros(shape, dtype) for name, (shape, dtype) in self._cache_spec.items()}
        if self.engine == "interpreter":
            self.cache = zeros
        else:
            for name, buffer in self._kv_buffers.items():
                buffer.write(zeros[name])

    def _run(self, signature: str, tokens: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Run one signature; returns its logits (when it has them) as {"logits": [1, T, vocab]}."""
        if self.engine == "interpreter":
            out = self._runners[signature](tokens=tokens, input_pos=positions, **self.cache, **self._lora)
            for name in self.cache:
                self.cache[name] = out[name]
            self._steps_out = {n: v for n, v in out.items() if n.startswith(STATE_STEPS_PREFIX)}
            return {"logits": out["logits"]} if "logits" in out else {}
        inputs, outputs = self._io[signature]
        inputs["tokens"].write(tokens)
        inputs["input_pos"].write(positions)
        self._cm.run_by_name(
            signature, {**inputs, **self._kv_buffers, **self._lora_buffers}, {**outputs, **self._kv_buffers}
        )
        if not outputs:
            return {}
        t = tokens.shape[1]
        logits = outputs["logits"].read(t * self.vocab_size, np.float32)
        return {"logits": np.asarray(logits).reshape(1, t, self.vocab_size)}

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
            signature = next((name for w, n, name in self._fills if n == length and pos + n <= w), signature)
            take = min(length, len(chunk))
            # Padding like LiteRT-LM's: zeros past the prompt; those slots are overwritten later.
            ids = np.zeros((1, length), np.int32)
            ids[0, :take] = chunk[:take]
            positions = np.zeros(length, np.int32)
            positions[:take] = np.arange(pos, pos + take, dtype=np.int32)
            self._run(signature, ids, positions)
            pos += take

    def verify_capacity(self, pos: int) -> int:
        """How many tokens one `verify` call can score starting at `pos` (0: no verify signature fits)."""
        return max((k for k, w, _ in self._verifies if pos + k <= w), default=0)

    def verify(self, tokens: list[int], pos: int) -> np.ndarray:
        """Logits [len(tokens), vocab] for `tokens` written at positions pos..: row i predicts what follows tokens[i].

        The cache slots from pos on are written like decoding each token would write them; slots past the tokens
        (padding) get junk, which is masked and overwritten later, exactly like prefill padding."""
        n = len(tokens)
        picked = next(((k, name) for k, w, name in self._verifies if k >= n and pos + k <= w), None)
        if picked is None:
            raise ValueError(f"no verify signature takes {n} tokens at position {pos} (cache {self.kv_len})")
        k, signature = picked
        ids = np.zeros((1, k), np.int32)
        ids[0, :n] = tokens
        positions = np.zeros(k, np.int32)
        positions[:n] = np.arange(pos, pos + n, dtype=np.int32)
        logits = self._run(signature, ids, positions)["logits"][0, :n]
        self._verified = (signature, n)
        return logits

    def keep_verified(self, kept: int) -> None:
        """After `verify`, keep only its first `kept` tokens in the model: the KV slots of the others are overwritten
        later, but layers with state have folded them in, so their state becomes the one after token `kept` (the
        verify signature outputs it for every token). Costs nothing when every scored token is kept."""
        if self._verified is None:
            raise ValueError("keep_verified follows a verify call")
        signature, scored = self._verified
        self._verified = None
        if not 1 <= kept <= scored:
            raise ValueError(f"cannot keep {kept} of the {scored} verified tokens")
        if kept == scored or not self.info.state_inputs:
            return
        for name, shape in self.info.state_inputs.items():
            size = int(np.prod(shape))
            if self.engine == "interpreter":
                self.cache[name] = np.ascontiguousarray(self._steps_out[_steps_name(name)][kept - 1].reshape(shape))
                continue
            # Read up to the kept token's entry only: the later ones are never needed.
            steps = self._io[signature][1][_steps_name(name)].read(kept * size, self._cache_spec[name][1])
            self._kv_buffers[name].write(np.ascontiguousarray(steps[-size:].reshape(shape)))

    def decode_shortlist(self, token: int, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids [K], logits [K]) of the K most likely next tokens for `token` at `pos`, through the two-stage head
        (int4 copy ranks, the file's head scores exactly); the cache is written as `decode` writes it."""
        if pos >= self.kv_len:
            raise ValueError(f"position {pos} is past the KV cache length {self.kv_len}")
        picked = next((name for w, _, name in self._shortlists if pos < w), None)
        if picked is None:
            raise ValueError("this file has no shortlist signatures (convert it with --shortlist K)")
        tokens, positions = np.array([[token]], np.int32), np.array([pos], np.int32)
        k = self.shortlist_size
        if self.engine == "interpreter":
            out = self._runners[picked](tokens=tokens, input_pos=positions, **self.cache, **self._lora)
            for name in self.cache:
                self.cache[name] = out[name]
            return out["ids"].reshape(-1), out["logits"].reshape(-1)
        inputs, outputs = self._io[picked]
        inputs["tokens"].write(tokens)
        inputs["input_pos"].write(positions)
        self._cm.run_by_name(
            picked, {**inputs, **self._kv_buffers, **self._lora_buffers}, {**outputs, **self._kv_buffers}
        )
        ids = np.asarray(outputs["ids"].read(k, np.int32))
        return ids, np.asarray(outputs["logits"].read(k, np.float32))

    def decode(self, token: int, pos: int) -> np.ndarray:
        """Logits [vocab] for `token` at position `pos`."""
        if pos >= self.kv_len:
            raise ValueError(f"position {pos} is past the KV cache length {self.kv_len}")
        signature = next((name for w, name in self._steps if pos < w), "decode")
        out = self._run(signature, np.array([[token]], np.int32), np.array([pos], np.int32))
        return out["logits"].reshape(-1)


def _steps_name(state_input: str) -> str:
    """The verify output holding `state_input` (`kv_cache_c_<i>...`) after each token."""
    return STATE_STEPS_PREFIX + state_input.removeprefix("kv_cache_")
