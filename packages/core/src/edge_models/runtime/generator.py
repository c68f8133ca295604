"""Text generation: tokenizer -> prefill -> decode loop -> sampler -> streamed text."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.hf.chat_template import ChatTemplate
from edge_models.runtime.bundles import BUNDLE_SUFFIXES, read_bundle
from edge_models.runtime.constraints import Constraint, Guide, engine_tokenizer
from edge_models.runtime.litert_model import LiteRTModel
from edge_models.runtime.sampler import Sampler, SamplerConfig
from edge_models.runtime.speculative import BackOff, common_prefix, prompt_lookup
from edge_models.runtime.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from edge_models.runtime.tools import ToolFormat, tool_format, tool_instructions, with_tool_instructions
from edge_models.spec import PromptTemplate


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    # Prompt tokens run through prefill: fewer than prompt_tokens when a chat session reuses its cache.
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    # Under a constraint: whether the text matches it (False when max tokens or the cache ran out first).
    constraint_met: bool | None = None
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
        return self.prefilled_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    def summary(self) -> str:
        reused = (
            f" ({self.prompt_tokens - self.prefilled_tokens} from the cache)"
            if self.prefilled_tokens < self.prompt_tokens
            else ""
        )
        drafts = f"; drafts {self.accepted_tokens}/{self.drafted_tokens} accepted" if self.drafted_tokens else ""
        return (
            f"[{self.prompt_tokens} prompt tokens{reused}, {self.generated_tokens} generated ({self.stop_reason}); "
            f"first token {self.time_to_first_token_s * 1000:.0f} ms; "
            f"prefill {self.prefill_tokens_per_s:.1f} tok/s; decode {self.decode_tokens_per_s:.1f} tok/s{drafts}]"
        )


Message = dict[str, Any]
# Drafted tokens per verify call at most (verify_8 scores the fed token and 7 drafts).
MAX_DRAFT = 7


@dataclass
class Generator:
    """`start_token` begins plain prompts; `chat_start_token` begins chat prompts, whose text comes from
    `chat_template` (Jinja) or else from the `template` affixes. They differ for a checkpoint whose chat template
    writes the start token itself (then `chat_start_token` is None) or leaves it out."""

    model: LiteRTModel
    tokenizer: Tokenizer
    stop_tokens: tuple[str, ...]
    start_token: str | None = None
    template: PromptTemplate = field(default_factory=PromptTemplate)
    chat_template: ChatTemplate | None = None
    chat_start_token: str | None = None
    last_stats: GenerationStats = field(default_factory=GenerationStats)
    # The tokens whose keys and values the model's KV cache holds, in order from position 0.
    cached_ids: list[int] = field(default_factory=list)
    # Speculative decoding, where the file has verify signatures (`convert` adds them): drafts from prompt lookup,
    # or from `draft_model`, a smaller converted model with the same tokenizer (`attach_draft`).
    speculate: bool = True
    draft_model: LiteRTModel | None = None
    # The tokens the draft model's cache holds, from position 0.
    draft_cached_ids: list[int] = field(default_factory=list)
    # What every generated text must match unless a call gives its own (`Constraint.json_schema(...)` etc.).
    constraint: Constraint | None = None
    # The registered model family (`ModelSpec.family`), when known: its tool-call syntax where the chat template
    # does not show one.
    family: str | None = None

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
        self.chat_start_id = self._single_id(self.chat_start_token, "start") if self.chat_start_token else None

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
        """A `.task` or `.litertlm` bundle carries everything. A `.tflite` takes the conventions of the checkpoint
        directory its tokenizer sits in (`tokenizer_config.json`, `generation_config.json`, the chat template),
        then the registered `model`'s defaults; the tokenizer is `tokenizer` or one beside the file."""
        path = Path(path)
        if path.suffix in BUNDLE_SUFFIXES:
            bundle = read_bundle(path)
            tok = load_tokenizer(tokenizer) if tokenizer else bundle.tokenizer
            stops = tuple(dict.fromkeys((*bundle.stop_tokens, *extra_stop_tokens)))
            return cls(
                LiteRTModel.from_bundle(bundle, threads),
                tok,
                stops,
                start_token=bundle.start_token,
                template=bundle.affixes,
                chat_template=bundle.chat_template,
                chat_start_token=bundle.start_token,
            )
        from edge_models.hf.tokens import find_tokenizer, read_checkpoint_tokens, resolve_conventions

        runner = LiteRTModel(path, threads)
        if tokenizer is None:
            tokenizer = find_tokenizer(path.parent)
            if tokenizer is None:
                raise TokenizerError(f"{path}: give --tokenizer (no tokenizer.json or tokenizer.model beside it)")
        checkpoint = read_checkpoint_tokens(Path(tokenizer).parent, tokenizer)
        defaults = family = None
        if model is not None:
            from edge_models.plugins import registry

            spec = registry().get(model)
            defaults, family = spec.tokenizer, spec.family
        conventions = resolve_conventions(checkpoint, defaults, stop_tokens=())
        stops = tuple(dict.fromkeys((*conventions.stop_tokens, *extra_stop_tokens)))
        if not stops:
            raise TokenizerError(
                f"{path}: no stop token: none in {checkpoint.directory} (tokenizer_config.json eos_token, "
                "generation_config.json eos_token_id); give --stop-token or --model NAME"
            )
        jinja, chat_start = conventions.chat_template, conventions.start_token
        if jinja is not None:
            # A Jinja template writes the start token itself when the model wants one, as in transformers. That text
            # becomes the token's id here instead (a SentencePiece model would spell "<s>" out as plain text).
            chat_start = None
            bos = checkpoint.bos
            if bos and jinja.render([{"role": "user", "content": "Hello"}]).startswith(bos):
                jinja = ChatTemplate(jinja.text, jinja.source, {**jinja.special_tokens, "bos_token": ""})
                chat_start = bos
        return cls(
            runner,
            load_tokenizer(tokenizer),
            stops,
            start_token=conventions.start_token,
            template=conventions.affixes,
            chat_template=jinja,
            chat_start_token=chat_start,
            family=family,
        )

    def render_chat(
        self, messages: list[Message], add_generation_prompt: bool = True, tools: list[dict] | None = None
    ) -> str:
        """The conversation's text. `tools` go through the chat template's `tools` variable; a template without one
        (or affixes only) gets them as instructions opening the system message, in the family's call syntax."""
        if tools and (self.chat_template is None or not self.chat_template.reads_tools):
            # Affixes without a system turn (Gemma's) would print a system message bare: the first user turn gets it.
            system_turn = self.chat_template is not None or bool(self.template.system_prefix)
            messages = with_tool_instructions(messages, tool_instructions(tools, self.tool_format), system_turn)
            tools = None
        if self.chat_template is not None:
            return self.chat_template.render(messages, add_generation_prompt, tools=tools)
        return self.template.render_messages(messages, add_generation_prompt)

    def encode_chat(self, messages: list[Message], tools: list[dict] | None = None) -> list[int]:
        """The conversation's token ids, opened for the assistant's answer."""
        ids = self.tokenizer.encode(self.render_chat(messages, tools=tools))
        return [self.chat_start_id, *ids] if self.chat_start_id is not None else ids

    @property
    def tool_format(self) -> ToolFormat:
        """The call syntax this model writes: what its chat template says, else its family's (`family`)."""
        if self.chat_template is not None:
            return tool_format(self.chat_template.text, self.family)
        return tool_format(" ".join(str(v) for v in astuple(self.template)), self.family)

    def lark_literal(self, text: str) -> str:
        """`text` in a Lark grammar: a special token (never text) by its id, anything else as a string; a stop token
        is "" (it may only end the text, where the grammar is complete)."""
        i = self.tokenizer.piece_to_id(text)
        if i in self.stop_ids:
            return ""
        if i is not None:
            starts = {j for j in (self.start_id, self.chat_start_id) if j is not None}
            engine = engine_tokenizer(self.tokenizer, self.model.vocab_size, self.stop_ids, starts)
            if engine.is_special_token(i):
                return f"<[{i}]>"
        return json.dumps(text, ensure_ascii=False)

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        if not prompt:
            raise ValueError("the prompt is empty")
        if chat:
            return self.encode_chat([{"role": "user", "content": prompt}])
        ids = self.tokenizer.encode(prompt)
        return [self.start_id, *ids] if self.start_id is not None else ids

    def _decode(self, token: int, pos: int, sampler: SamplerConfig) -> np.ndarray:
        """Logits over the vocabulary for the next token: through the file's shortlist signatures when it has them
        and the sampler reads only the top tokens (greedy, or top-k within the list), the rest -inf."""
        k = self.model.shortlist_size
        if k and (sampler.temperature == 0 or 0 < sampler.top_k <= k):
            ids, scores = self.model.decode_shortlist(token, pos)
            logits = np.full(self.model.vocab_size, -np.inf, np.float32)
            logits[ids] = scores
            return logits
        return self.model.decode(token, pos)

    def generate_ids(
        self,
        ids: list[int],
        max_tokens: int,
        sampler: SamplerConfig | None = None,
        cached: int = 0,
        speculate: bool | None = None,
        constraint: Constraint | None = None,
    ) -> Iterator[int]:
        """Yield generated ids; stops at a stop token (not yielded), max_tokens or a full cache.

        `cached` leading ids are already in the KV cache from the previous call (a chat session's earlier turns):
        only the rest is prefilled. `self.cached_ids` holds what the cache holds afterwards. With `speculate`
        (default: `self.speculate`) and a file with verify signatures, drafts (prompt lookup, or the draft model)
        are checked several tokens per call; the output is what plain decoding gives (greedy: the same tokens;
        sampling: the same distribution).

        Under a `constraint` (default: `self.constraint`) every token is one the grammar allows: a stop token only
        where the text is complete, and generation ends where the grammar allows nothing more. Drafts are cut at the
        first token the grammar rejects."""
        if not ids:
            raise ValueError("no prompt tokens")
        kv = self.model.kv_len
        if len(ids) >= kv:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; the KV cache holds {kv} (convert with a larger --kv-cache)"
            )
        cached = min(cached, len(ids) - 1)
        if ids[:cached] != self.cached_ids[:cached]:
            raise ValueError("the cached tokens are not a prefix of the prompt")
        if self.model.has_state and cached != len(self.cached_ids):
            # Layers with state hold it after the last token run, not after any shorter prefix: a prefix is
            # reusable only if it is everything the model has run, else the prompt is run from the start.
            cached = 0
        speculate = self.speculate if speculate is None else speculate
        sample = Sampler(sampler or SamplerConfig(), vocab_limit=self.tokenizer.vocab_size)
        guide = self.guide(constraint or self.constraint)
        stats = self.last_stats = GenerationStats(
            prompt_tokens=len(ids), prefilled_tokens=len(ids) - cached, stop_reason="max tokens"
        )
        started = time.perf_counter()
        if cached == 0:
            self.model.reset()
        # Like LiteRT-LM: prefill all but the last prompt token, then decode from it.
        self.model.prefill(ids[cached:-1], cached)
        history, token, pos = list(ids), ids[-1], len(ids) - 1
        self.cached_ids = history[:pos]
        backoff = BackOff()
        decode_started = None
        while stats.generated_tokens < max_tokens:
            if pos >= kv:
                stats.stop_reason = "KV cache full"
                break
            room = min(self.model.verify_capacity(pos) - 1, max_tokens - stats.generated_tokens - 1, MAX_DRAFT)
            draft = self._propose(token, pos, history, room) if speculate and room > 0 and backoff.allows() else []
            if draft and guide is not None:
                draft = draft[: guide.valid_prefix(draft)]
            if draft:
                chosen = self._check_draft(token, draft, pos, history, sample, guide)
                stats.drafted_tokens += len(draft)
                stats.accepted_tokens += len(chosen) - 1
                backoff.record(len(chosen))
            else:
                # A shortlist may hold no token the grammar allows: under a constraint the logits are whole.
                logits = self._decode(token, pos, sample.config) if guide is None else self.model.decode(token, pos)
                self.cached_ids.append(token)
                chosen = [self._choose(logits, history, sample, guide)]
            if decode_started is None:
                decode_started = time.perf_counter()
                stats.time_to_first_token_s = stats.prefill_s = decode_started - started
            for n_kept, token in enumerate(chosen, 1):
                if token in self.stop_ids:
                    stats.stop_reason = "stop token"
                    break
                stats.generated_tokens += 1
                history.append(token)
                yield token
                # The guide has consumed all of `chosen`: finished means finished after the last of them.
                if guide is not None and n_kept == len(chosen) and guide.finished:
                    stats.stop_reason = "end of grammar"
                    break
                if stats.generated_tokens >= max_tokens:
                    if guide is not None:
                        guide.rollback(len(chosen) - n_kept)  # chosen with a draft, never yielded
                    break
            else:
                pos = len(self.cached_ids)
                continue
            break
        stats.decode_s = time.perf_counter() - (decode_started or started)
        if guide is not None:
            stats.constraint_met = guide.complete

    def guide(self, constraint: Constraint | None) -> Guide | None:
        """A fresh matcher for one generation under `constraint` (checked: a clear error before any token)."""
        if constraint is None:
            return None
        vocab = self.model.vocab_size
        starts = {i for i in (self.start_id, self.chat_start_id) if i is not None}
        return Guide(constraint, engine_tokenizer(self.tokenizer, vocab, self.stop_ids, starts), vocab)

    @staticmethod
    def _choose(logits: np.ndarray, history: list[int], sample: Sampler, guide: Guide | None) -> int:
        """The next token. Greedy under a constraint checks the argmax first: when the grammar allows it, it is the
        argmax of the masked logits too, so no mask is computed. Sampling masks before every filter (top-k, top-p,
        min-p see only allowed tokens)."""
        if guide is None:
            return sample(logits, history)
        if sample.config.temperature == 0:
            token = sample(logits, history)
            if guide.allows(token):
                guide.consume(token)
                return token
        token = sample(guide.mask(logits), history)
        guide.consume(token)
        return token

    def attach_draft(self, path: str | Path, threads: int | None = None) -> None:
        """Draft with the converted model at `path` (a .tflite or bundle) instead of prompt lookup: it must share the
        tokenizer (same vocabulary size) and hold the target's KV length."""
        bundled = Path(path).suffix in BUNDLE_SUFFIXES
        model = LiteRTModel.from_bundle(read_bundle(path), threads) if bundled else LiteRTModel(path, threads)
        if model.vocab_size != self.model.vocab_size:
            raise ValueError(
                f"{path}: the draft model has {model.vocab_size} logits, the model {self.model.vocab_size}: "
                "a draft model must share the tokenizer"
            )
        if model.has_state:
            raise ValueError(
                f"{path}: the draft model has layers with state, which cannot be rewound to the target's tokens "
                "after a rejected draft; use prompt lookup or a draft model without state"
            )
        if model.kv_len < self.model.kv_len:
            raise ValueError(f"{path}: the draft model's KV cache ({model.kv_len}) is shorter than {self.model.kv_len}")
        self.draft_model, self.draft_cached_ids = model, []

    def _propose(self, token: int, pos: int, history: list[int], room: int) -> list[int]:
        if self.draft_model is None:
            return prompt_lookup(history, room)
        draft = self.draft_model
        # Bring the draft's cache to the target's tokens before `pos`, then let it decode greedily from `token`.
        known = common_prefix(self.cached_ids[:pos], self.draft_cached_ids)
        if known == 0:
            draft.reset()
        draft.prefill(self.cached_ids[known:pos], known)
        proposals, fed = [], token
        for i in range(room):
            fed = int(np.argmax(draft.decode(fed, pos + i)))
            proposals.append(fed)
        # The last proposal was never fed: the draft's cache ends with the one before it.
        self.draft_cached_ids = [*self.cached_ids[:pos], token, *proposals[:-1]]
        return proposals

    def _check_draft(
        self, token: int, draft: list[int], pos: int, history: list[int], sample: Sampler, guide: Guide | None = None
    ) -> list[int]:
        """Score `token` and `draft` in one verify call; the accepted drafts plus the model's own next token. Under a
        constraint each row is masked by the grammar's state after the tokens chosen before it."""
        block = [token, *draft]
        rows = self.model.verify(block, pos)
        chosen: list[int] = []
        for i, row in enumerate(rows):
            context = history + chosen
            if i < len(draft):
                if guide is None:
                    chosen.append(sample.check_draft(row, context, draft[i]))
                elif sample.config.temperature == 0:
                    chosen.append(self._choose(row, context, sample, guide))
                else:
                    chosen.append(sample.check_draft(guide.mask(row), context, draft[i]))
                    guide.consume(chosen[-1])
                if chosen[-1] != draft[i]:
                    break
            else:
                chosen.append(self._choose(row, context, sample, guide))
        # The cache holds the fed token and the accepted drafts; slots of rejected drafts are overwritten later, and
        # layers with state go back to their state after the last kept token.
        self.model.keep_verified(len(chosen))
        self.cached_ids.extend(block[: len(chosen)])
        return chosen

    def stream_ids(
        self,
        ids: list[int],
        max_tokens: int = 128,
        sampler: SamplerConfig | None = None,
        cached: int = 0,
        constraint: Constraint | None = None,
    ) -> Iterator[str]:
        """Yield text as it is produced; multi-byte characters are held until complete."""
        generated: list[int] = []
        emitted = ""
        for token in self.generate_ids(ids, max_tokens, sampler, cached, constraint=constraint):
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

    def stream(
        self,
        prompt: str,
        max_tokens: int = 128,
        sampler: SamplerConfig | None = None,
        chat: bool = False,
        constraint: Constraint | None = None,
    ) -> Iterator[str]:
        return self.stream_ids(self.encode(prompt, chat), max_tokens, sampler, constraint=constraint)

    def generate(
        self,
        prompt: str,
        max_tokens: int = 128,
        sampler: SamplerConfig | None = None,
        chat: bool = False,
        constraint: Constraint | None = None,
    ) -> str:
        return "".join(self.stream(prompt, max_tokens, sampler, chat, constraint))
