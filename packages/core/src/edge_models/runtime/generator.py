"""Text generation: tokenizer -> prefill -> decode loop -> sampler -> streamed text."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.runtime.litert_model import LiteRTModel
from edge_models.runtime.sampler import Sampler, SamplerConfig
from edge_models.runtime.tokenizer import SentencePieceTokenizer, Tokenizer, TokenizerError, load_tokenizer
from edge_models.spec import PromptTemplate


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    time_to_first_token_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    stop_reason: str = ""

    @property
    def decode_tokens_per_s(self) -> float:
        steps = max(self.generated_tokens - 1, 0)
        return steps / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    def summary(self) -> str:
        return (
            f"[{self.prompt_tokens} prompt tokens, {self.generated_tokens} generated ({self.stop_reason}); "
            f"first token {self.time_to_first_token_s * 1000:.0f} ms; "
            f"prefill {self.prefill_tokens_per_s:.1f} tok/s; decode {self.decode_tokens_per_s:.1f} tok/s]"
        )


@dataclass
class Generator:
    model: LiteRTModel
    tokenizer: Tokenizer
    stop_tokens: tuple[str, ...]
    start_token: str | None = None
    template: PromptTemplate = field(default_factory=PromptTemplate)
    last_stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        tok, model = self.tokenizer, self.model
        if tok.vocab_size > model.vocab_size:
            raise TokenizerError(
                f"tokenizer has {tok.vocab_size} tokens but the model's logits have {model.vocab_size}: "
                "they do not belong together"
            )
        if tok.vocab_size < model.vocab_size:
            print(
                f"warning: tokenizer has {tok.vocab_size} tokens, model logits {model.vocab_size}; "
                "the padded ids will never be sampled",
                file=sys.stderr,
            )
        if not self.stop_tokens:
            raise TokenizerError("no stop tokens: generation would only end at max tokens")
        self.stop_ids = {self._single_id(t, "stop") for t in self.stop_tokens}
        self.start_id = self._single_id(self.start_token, "start") if self.start_token else None

    def _single_id(self, token: str, role: str) -> int:
        i = self.tokenizer.piece_to_id(token)
        if i is None:
            raise TokenizerError(f"{role} token {token!r} is not a single token of the tokenizer")
        return i

    @classmethod
    def open(
        cls,
        path: str | Path,
        tokenizer: str | Path | None = None,
        model: str | None = None,
        extra_stop_tokens: tuple[str, ...] = (),
        threads: int | None = None,
    ) -> Generator:
        """A .task bundle carries everything; a .tflite needs a tokenizer and a model name (or
        a tokenizer.model / tokenizer.json beside it) for start/stop tokens."""
        path = Path(path)
        start, stops, template = None, (), PromptTemplate()
        if model is not None:
            from edge_models.plugins import registry

            defaults = registry().get(model).tokenizer
            start, stops, template = defaults.start_token, defaults.stop_tokens, defaults.template
        if path.suffix == ".task":
            from edge_models.task_format import read_task

            bundle = read_task(path)
            runner = LiteRTModel(bundle.tflite, threads)
            tok: Tokenizer = (
                load_tokenizer(tokenizer) if tokenizer else SentencePieceTokenizer(bundle.tokenizer_model, str(path))
            )
            if model is None:
                p = bundle.params
                start, stops, template = p.start_token or None, tuple(p.stop_tokens), p.prompt_template
        else:
            runner = LiteRTModel(path, threads)
            if tokenizer is None:
                beside = [
                    p for p in (path.with_name("tokenizer.model"), path.with_name("tokenizer.json")) if p.exists()
                ]
                if not beside:
                    raise TokenizerError(f"{path}: give --tokenizer (no tokenizer.model or tokenizer.json beside it)")
                tokenizer = beside[0]
            tok = load_tokenizer(tokenizer)
        stops = tuple(dict.fromkeys((*stops, *extra_stop_tokens)))
        return cls(runner, tok, stops, start, template)

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt:
            raise ValueError("the prompt is empty")
        text = self.template.render(prompt) if chat else prompt
        ids = self.tokenizer.encode(text)
        return [self.start_id, *ids] if self.start_id is not None else ids

    def generate_ids(self, ids: list[int], max_tokens: int, sampler: SamplerConfig | None = None) -> Iterator[int]:
        """Yield generated ids; stops at a stop token (not yielded), max_tokens or a full cache."""
        if not ids:
            raise ValueError("no prompt tokens")
        kv = self.model.kv_len
        if len(ids) >= kv:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; the KV cache holds {kv} (convert with a larger --kv-cache)"
            )
        sample = Sampler(sampler or SamplerConfig(), vocab_limit=self.tokenizer.vocab_size)
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids), stop_reason="max tokens")
        started = time.perf_counter()
        self.model.reset()
        # Like LiteRT-LM: prefill all but the last prompt token, then decode from it.
        self.model.prefill(ids[:-1], 0)
        history, token, pos = list(ids), ids[-1], len(ids) - 1
        decode_started = None
        for _ in range(max_tokens):
            if pos >= kv:
                stats.stop_reason = "KV cache full"
                break
            logits = self.model.decode(token, pos)
            token = sample(logits, history)
            if decode_started is None:
                decode_started = time.perf_counter()
                stats.time_to_first_token_s = stats.prefill_s = decode_started - started
            if token in self.stop_ids:
                stats.stop_reason = "stop token"
                break
            stats.generated_tokens += 1
            history.append(token)
            pos += 1
            yield token
        stats.decode_s = time.perf_counter() - (decode_started or started)

    def stream(
        self, prompt: str, max_tokens: int = 128, sampler: SamplerConfig | None = None, chat: bool = False
    ) -> Iterator[str]:
        """Yield text as it is produced; multi-byte characters are held until complete."""
        ids = self.encode(prompt, chat)
        generated: list[int] = []
        emitted = ""
        for token in self.generate_ids(ids, max_tokens, sampler):
            generated.append(token)
            text = self.tokenizer.decode(generated)
            if text.endswith("\ufffd"):
                continue
            if text.startswith(emitted):
                yield text[len(emitted) :]
            emitted = text
        text = self.tokenizer.decode(generated)
        if text != emitted and text.startswith(emitted):
            yield text[len(emitted) :]

    def generate(
        self, prompt: str, max_tokens: int = 128, sampler: SamplerConfig | None = None, chat: bool = False
    ) -> str:
        return "".join(self.stream(prompt, max_tokens, sampler, chat))
