"""A multi-turn conversation over one KV cache: each turn prefills only the tokens the cache does not hold yet."""

from __future__ import annotations

from collections.abc import Iterator

from edge_models.runtime.constraints import Constraint
from edge_models.runtime.generator import Generator, Message
from edge_models.runtime.sampler import SamplerConfig
from edge_models.runtime.speculative import common_prefix


class ConversationFullError(ValueError):
    """The conversation no longer fits the model's KV cache."""


class ChatSession:
    """The conversation is re-rendered through the chat template at every turn (so the prompt is exactly what
    the template gives for the whole history), and the KV cache is reused for the longest prefix it shares with
    what the cache holds. With `reuse_cache=False` every turn prefills the whole conversation (the baseline).
    Under a `constraint` every reply matches it (a JSON schema, a regex, a Lark grammar)."""

    def __init__(
        self,
        generator: Generator,
        system: str | None = None,
        max_tokens: int = 256,
        sampler: SamplerConfig | None = None,
        reuse_cache: bool = True,
        constraint: Constraint | None = None,
    ) -> None:
        self.generator = generator
        self.max_tokens = max_tokens
        self.sampler = sampler
        self.reuse_cache = reuse_cache
        self.constraint = constraint
        self.system = system
        self.messages: list[Message] = []
        self.reset(system)

    def reset(self, system: str | None = None) -> None:
        """Forget the conversation; `system` (or the current system message) opens the next one."""
        self.system = system if system is not None else self.system
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.generator.cached_ids = []

    def send(self, text: str) -> Iterator[str]:
        """Stream the assistant's reply to `text`; the turn joins the conversation when the reply is complete."""
        if not text.strip():
            raise ValueError("the message is empty")
        gen = self.generator
        messages = [*self.messages, {"role": "user", "content": text}]
        ids = gen.encode_chat(messages)
        room = gen.model.kv_len - len(ids)
        if room <= 1:
            raise ConversationFullError(
                f"the conversation is {len(ids)} tokens and the KV cache holds {gen.model.kv_len}: "
                "start a new one (/reset), or convert with a larger --kv-cache"
            )
        cached = common_prefix(ids, gen.cached_ids) if self.reuse_cache else 0
        reply = []
        for piece in gen.stream_ids(
            ids, min(self.max_tokens, room - 1), self.sampler, cached=cached, constraint=self.constraint
        ):
            reply.append(piece)
            yield piece
        self.messages = [*messages, {"role": "assistant", "content": "".join(reply)}]
