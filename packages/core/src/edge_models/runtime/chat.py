"""A multi-turn conversation over one KV cache: each turn prefills only the tokens the cache does not hold yet."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

from edge_models.runtime.constraints import Constraint
from edge_models.runtime.generator import Generator, Message
from edge_models.runtime.sampler import SamplerConfig
from edge_models.runtime.speculative import common_prefix
from edge_models.runtime.tools import TOOL_CHOICES, ToolCall, ToolError, check_calls, normalize_tools, tool_constraint


class ConversationFullError(ValueError):
    """The conversation no longer fits the model's KV cache."""


class ChatSession:
    """The conversation is re-rendered through the chat template at every turn (so the prompt is exactly what
    the template gives for the whole history), and the KV cache is reused for the longest prefix it shares with
    what the cache holds. With `reuse_cache=False` every turn prefills the whole conversation (the baseline).
    Under a `constraint` every reply matches it (a JSON schema, a regex, a Lark grammar).

    `tools` (definitions as dicts, or Python functions described by their signature and docstring) are offered
    through the chat template; `tool_choice` "auto" lets the model answer or call one (a call it opens is always
    valid), "required" makes every reply to the user a valid call (the reply to tool results may be words),
    "none" offers none. After a reply, `last_calls` holds its
    calls; `send_tool_results` answers them (or `run_tools` calls the Python functions given as tools)."""

    def __init__(
        self,
        generator: Generator,
        system: str | None = None,
        max_tokens: int = 256,
        sampler: SamplerConfig | None = None,
        reuse_cache: bool = True,
        constraint: Constraint | None = None,
        tools: Sequence[dict | Callable] | None = None,
        tool_choice: str = "auto",
    ) -> None:
        if tools and constraint is not None and tool_choice != "none":
            raise ToolError("give tools or a constraint, not both (tool calls have their own grammar)")
        self.generator = generator
        self.tools = normalize_tools(tools) if tools else None
        self.functions = {f.__name__: f for f in tools or () if callable(f) and not isinstance(f, dict)}
        if tool_choice not in TOOL_CHOICES:
            raise ToolError(f"tool choice must be one of {', '.join(TOOL_CHOICES)}, got {tool_choice!r}")
        self.tool_choice = tool_choice
        self.tool_format = generator.tool_format
        if self.tools:
            if tool_choice == "none":
                self.tools = None
            else:
                constraint = tool_constraint(self.tools, self.tool_format, tool_choice, generator.lark_literal)
        # The reply to tool results may answer in words: "required" is for replies to the user, or a chat loop
        # would call tools forever.
        self.results_constraint = constraint
        if self.tools and tool_choice == "required":
            self.results_constraint = tool_constraint(self.tools, self.tool_format, "auto", generator.lark_literal)
        self.last_calls: list[ToolCall] = []
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
        return self._reply([*self.messages, {"role": "user", "content": text}], self.constraint)

    def send_tool_results(self, results: Sequence[str | dict]) -> Iterator[str]:
        """Answer the last reply's calls, one result per call in order (text, or a dict sent as JSON), and stream
        the reply that follows. A template with a `tool` role gets the results in it; one without (Gemma 3) gets
        them as a user turn holding a `tool_output` block."""
        if not self.last_calls:
            raise ToolError("the last reply called no tool: there is nothing to answer")
        if len(results) != len(self.last_calls):
            raise ToolError(f"the last reply made {len(self.last_calls)} call(s); got {len(results)} result(s)")
        texts = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in results]
        if self._template_has_tool_role():
            turns = [{"role": "tool", "name": c.name, "content": t} for c, t in zip(self.last_calls, texts)]
        else:
            outputs = "\n".join(f"```tool_output\n{t}\n```" for t in texts)
            turns = [{"role": "user", "content": outputs}]
        return self._reply([*self.messages, *turns], self.results_constraint)

    def run_tools(self) -> list[str]:
        """Call the Python functions (given as tools) the last reply asked for; their results as text."""
        results = []
        for call in self.last_calls:
            if call.name not in self.functions:
                raise ToolError(f"{call.name!r} was given as a definition, not a Python function: answer it yourself")
            value = self.functions[call.name](**call.arguments)
            results.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return results

    def _template_has_tool_role(self) -> bool:
        template = self.generator.chat_template
        return template is not None and template.reads_tools and "tool" in template.text.replace("tools", "")

    def _reply(self, messages: list[Message], constraint: Constraint | None) -> Iterator[str]:
        gen = self.generator
        ids = gen.encode_chat(messages, tools=self.tools)
        room = gen.model.kv_len - len(ids)
        if room <= 1:
            raise ConversationFullError(
                f"the conversation is {len(ids)} tokens and the KV cache holds {gen.model.kv_len}: "
                "start a new one (/reset), or convert with a larger --kv-cache"
            )
        cached = common_prefix(ids, gen.cached_ids) if self.reuse_cache else 0
        self.last_calls = []
        reply = []
        for piece in gen.stream_ids(
            ids, min(self.max_tokens, room - 1), self.sampler, cached=cached, constraint=constraint
        ):
            reply.append(piece)
            yield piece
        text = "".join(reply)
        answer: Message = {"role": "assistant", "content": text}
        if self.tools:
            if gen.last_stats.constraint_met is False:
                raise ToolError(
                    f"the reply ended ({gen.last_stats.stop_reason}) inside its tool call: raise the max tokens"
                )
            content, calls = self.tool_format.parse(text)
            check_calls(calls, self.tools)
            if calls and self._template_has_tool_role():
                answer = {"role": "assistant", "content": content, "tool_calls": [c.for_template() for c in calls]}
            self.last_calls = calls
        self.messages = [*messages, answer]
