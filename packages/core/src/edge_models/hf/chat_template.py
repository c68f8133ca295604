"""A checkpoint's Jinja chat template, rendered the way `transformers`' `apply_chat_template` renders it.

Same sandbox, same whitespace settings (`trim_blocks`, `lstrip_blocks`), same helpers (`raise_exception`,
`strftime_now`, a `tojson` that does not HTML-escape), and the tokenizer's special tokens as variables, so the
rendered string and therefore the token ids are the ones the model was fine-tuned on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from edge_models.spec import PromptTemplate

# A message: role and content, and for tool calling an assistant's `tool_calls` or a tool result's `name`.
Message = dict[str, Any]


class ChatTemplateError(ValueError):
    """A chat template that cannot be compiled or rendered; the message names where it came from."""


def _raise_exception(message: str):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@dataclass(frozen=True)
class ChatTemplate:
    """`text` is the Jinja source; `source` says where it was read (for error messages); `special_tokens` maps
    `bos_token`, `eos_token`, ... to their strings, as the tokenizer passes them to the template."""

    text: str
    source: str = "chat template"
    special_tokens: dict[str, str] = field(default_factory=dict)

    @cached_property
    def _compiled(self):
        try:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ChatTemplateError("Jinja chat templates need `pip install jinja2`") from None
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            return env.from_string(self.text)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"{self.source}: the chat template does not compile: {e}") from None

    def render(
        self, messages: list[Message], add_generation_prompt: bool = True, tools: list[dict] | None = None
    ) -> str:
        """The conversation as the model reads it; with `add_generation_prompt`, opened for the assistant's turn.
        `tools` (definitions as `{"type": "function", "function": {...}}`) go to the template's `tools` variable,
        None when there are none, as `apply_chat_template` passes them."""
        template = self._compiled
        try:
            return template.render(
                messages=[dict(m) for m in messages],
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
            )
        except Exception as e:  # noqa: BLE001 - Jinja raises anything the template's code raises
            raise ChatTemplateError(f"{self.source}: the chat template fails to render: {e}") from None

    @property
    def reads_tools(self) -> bool:
        """Whether the template has a place for tool definitions (many, e.g. Gemma 3's, have none)."""
        return bool(re.search(r"\btools\b", self.text))

    def for_litert_lm(self) -> str:
        """The template as LiteRT-LM 0.18 must be given it. Its engine passes each message's content as a list of
        typed parts ([{"type": "text", "text": ...}]) and `bos_token` / `eos_token` as empty strings (it adds the
        start token itself), so templates written for `transformers` would fail on `+` or lose their end-of-turn
        tokens. A one-line prelude turns the contents back into strings and sets every special token but the start
        token; the template itself follows unchanged."""
        text_of = "m.content if m.content is string else m.content | map(attribute='text') | join('')"
        tags = [
            "{% set ns = namespace(messages=[]) %}",
            "{% for m in messages %}",
            f"{{% set ns.messages = ns.messages + [{{'role': m.role, 'content': {text_of}}}] %}}",
            "{% endfor %}",
            "{% set messages = ns.messages %}",
            *(
                f"{{% set {name} = {json.dumps(value)} %}}"
                for name, value in self.special_tokens.items()
                if name != "bos_token"
            ),
        ]
        # No whitespace between or after the tags: the template's own first characters must stay as they are.
        return "".join(tags) + self.text

    def check(self) -> None:
        """Render a two-turn conversation, so a broken template fails now rather than at the first chat."""
        self.render(_PROBES[0])

    def affixes(self) -> tuple[str, PromptTemplate]:
        """The template as fixed text around each turn (what `.task` bundles carry): (preamble, affixes), the
        preamble being the text before the first turn when there is no system message (e.g. the BOS string).

        Found by rendering conversations with marker contents and cutting at the markers; raises
        ChatTemplateError when the template is not of that form (text that depends on the turn's index, messages
        dropped or reordered, a system message folded into the first user turn).
        """
        return _derive_affixes(self)


# Conversations every template in use must render: two user turns, with and without a system message.
_PROBES = (
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Bye"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Bye"},
    ],
)

_TOKEN_LIKE = re.compile(r"<[^<>\s]+>|\[/?[A-Z_]+\]")
# Private-use characters: kept by `trim` and by any text filter a template applies to contents.
_MARK = "\ue000{}\ue001"


def _between(text: str, start: str | None, end: str | None) -> str:
    begin = 0 if start is None else text.index(start) + len(start)
    return text[begin:] if end is None else text[begin : text.index(end, begin)]


def _derive_affixes(template: ChatTemplate) -> tuple[str, PromptTemplate]:
    u1, a1, u2 = (_MARK.format(n) for n in ("u1", "a1", "u2"))
    user1, user2 = {"role": "user", "content": u1}, {"role": "user", "content": u2}
    answer = {"role": "assistant", "content": a1}
    problem = f"{template.source}: the chat template cannot be written as fixed text around each turn"
    try:
        plain = template.render([user1, answer, user2], add_generation_prompt=True)
        opening = _between(plain, None, u1)
        user_end_model_start = _between(plain, u1, a1)
        model_end_user_start = _between(plain, a1, u2)
        after_last = _between(plain, u2, None)
        closed = _between(template.render([user1], add_generation_prompt=False), u1, None)
    except ValueError:
        raise ChatTemplateError(f"{problem} (it drops or reorders message contents)") from None
    if after_last != user_end_model_start:
        raise ChatTemplateError(f"{problem} (the generation prompt is not the opening of an answer)")
    # A closed conversation ends with the user suffix (and sometimes more, e.g. an EOS); the generation prompt
    # follows the same suffix with the model prefix.
    user_suffix = _common_prefix(closed, after_last)
    model_prefix = after_last[len(user_suffix) :]
    # Between an answer and the next user turn: model suffix + user prefix. The first turn's opening ends with the
    # same user prefix; what precedes it is the preamble.
    user_prefix = _common_suffix(opening, model_end_user_start)
    model_suffix = model_end_user_start[: len(model_end_user_start) - len(user_prefix)]
    preamble = opening[: len(opening) - len(user_prefix)]
    affixes = PromptTemplate(user_prefix, user_suffix, model_prefix, model_suffix)
    # The derivation must reproduce the template, or a bundle would prompt the model differently.
    if preamble + affixes.render_messages(_PROBES[0]) != template.render(_PROBES[0]):
        raise ChatTemplateError(f"{problem} (the text around a turn depends on the conversation)")
    return preamble, _with_system_affixes(template, preamble, affixes)


def _with_system_affixes(template: ChatTemplate, preamble: str, affixes: PromptTemplate) -> PromptTemplate:
    """Add system affixes when a system message is a turn of its own; templates that fold it into the first user
    turn (Gemma) or reject it (Mistral) keep none, and a system prompt then cannot go into the affixes."""
    s1, u1 = _MARK.format("s1"), _MARK.format("u1")
    try:
        text = template.render([{"role": "system", "content": s1}, {"role": "user", "content": u1}])
        before, after = _between(text, None, s1), _between(text, s1, u1)
    except (ValueError, ChatTemplateError):
        return affixes
    if not (before.startswith(preamble) and after.endswith(affixes.user_prefix)):
        return affixes
    candidate = replace(
        affixes,
        system_prefix=before[len(preamble) :],
        system_suffix=after[: len(after) - len(affixes.user_prefix)],
    )
    if preamble + candidate.render_messages(_PROBES[1]) != template.render(_PROBES[1]):
        return affixes
    return candidate


def _cuts_token(text: str, cut: int) -> int | None:
    """The start of the special-token-like span (`<...>`, `[INST]`) that `cut` falls inside, else None."""
    for m in _TOKEN_LIKE.finditer(text):
        if m.start() < cut < m.end():
            return m.start()
    return None


def _common_prefix(a: str, b: str) -> str:
    """The longest common beginning of `a` and `b` that does not end inside a special token of either."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    while (inside := _cuts_token(a, n)) is not None or (inside := _cuts_token(b, n)) is not None:
        n = inside
    return a[:n]


def _common_suffix(a: str, b: str) -> str:
    """The longest common ending of `a` and `b` that does not begin inside a special token of either."""
    n = 0
    while n < min(len(a), len(b)) and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    while True:
        inside_a, inside_b = _cuts_token(a, len(a) - n), _cuts_token(b, len(b) - n)
        if inside_a is None and inside_b is None:
            return a[len(a) - n :]
        # Start the common part after the cut token: shrink to the nearer token end.
        ends = [
            m.end() - (len(t) - n)
            for t, c in ((a, inside_a), (b, inside_b))
            if c is not None
            for m in _TOKEN_LIKE.finditer(t)
            if m.start() == c
        ]
        n -= max(ends)
