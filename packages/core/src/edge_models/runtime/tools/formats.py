"""Each family's call syntax: parsing a reply into text and calls, the llguidance grammars that make a reply a
valid call (`required`) or free text that becomes a valid call once it opens one (`auto`), and instructions for
templates with no place for tools."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_models.runtime.constraints import Constraint
from edge_models.runtime.tools.calls import ESCAPE, ToolCall, call_from, functiongemma_call, json_value, python_calls
from edge_models.runtime.tools.definitions import TOOL_CHOICES, ToolError, tool_name, tool_parameters

# --- formats ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolFormat:
    """A family's call syntax: `open` + body + `close`. `body` is "json" (`{"name", <args_key>}`) or "functiongemma"
    (`call:NAME{key:value}`); `own_line` puts it on a line of its own between the markers. `instructions` tell a model
    whose chat template has no place for tools how to call one (the definitions follow them in the system turn)."""

    name: str
    open: str
    close: str
    body: str = "json"
    args_key: str = "arguments"
    own_line: bool = False
    instructions: str = ""

    def parse(self, reply: str) -> tuple[str, list[ToolCall]]:
        """(the reply's text outside calls, the calls in order). A reply without the call syntax is all text; an
        opened call that cannot be read raises ToolError naming what is wrong."""
        if self.name == "llama3":
            return _parse_llama3(reply)
        if self.name == "generic":
            return _parse_generic(reply)
        text, calls, rest = [], [], reply
        while (start := rest.find(self.open)) >= 0:
            text.append(rest[:start])
            after = rest[start + len(self.open) :]
            end = after.find(self.close)
            body, rest = (after, "") if end < 0 else (after[:end], after[end + len(self.close) :])
            calls.extend(self._body_calls(body.strip()))
        text.append(rest)
        if self.name == "phi4":  # vLLM's spelling of the same calls
            joined = "".join(text)
            found = re.search(r"functools(\[.*\])", joined, re.DOTALL)
            if found:
                calls.extend(self._body_calls(found.group(1)))
                text = [joined[: found.start()], joined[found.end() :]]
        return "".join(text).strip(), calls

    def _body_calls(self, body: str) -> list[ToolCall]:
        where = f"{self.open} call"
        if self.body == "functiongemma":
            return [functiongemma_call(body, where)]
        if self.name == "gemma" and not body.lstrip().startswith(("{", "[")):
            return python_calls(body, where)
        value = json_value(body, where)
        return [call_from(v, where) for v in (value if isinstance(value, list) else [value])]

    # Grammars: `literal(text)` spells a marker in Lark (a special token by id, a quoted string, or "" for a stop
    # token, which only the end of the grammar allows).

    def call_grammar(self, tools: list[dict], literal: Callable[[str], str]) -> str:
        """Lark: the whole reply is one call of one of `tools`, its arguments valid under the tool's schema."""
        return f"start: {self._call_rule(literal)}\n{self._body_rules(tools, literal)}"

    def auto_grammar(self, tools: list[dict], literal: Callable[[str], str]) -> str:
        """Lark: free text, or free text followed by one valid call (once the reply opens a call, it is one)."""
        call = self._call_rule(literal)
        if not self.open:
            # Formats whose call is a bare JSON object: a reply that begins with `{` is a call.
            text = "TEXT: /(?s:[^{\\s].*)/ | /\\s*/"
            return f"start: TEXT | /\\s*/ {call}\n{text}\n{self._body_rules(tools, literal)}"
        opener = literal(self.open)
        if opener.startswith("<["):
            # A special token is never text: free text cannot hold it by accident.
            rules = "TEXT: /(?s:.*)/"
            start = f"start: TEXT | TEXT? {call}"
        else:
            # Text until the marker first appears (lazy), then the call; or text that never holds the marker.
            marker = re.escape(self.open).replace("/", "\\/")
            rules = f"TEXT: /(?s:.*)/ & ~/(?s:.*{marker}.*)/\nbefore[lazy]: /(?s:.*){marker}/"
            start = f"start: TEXT | before {self._call_rule(literal, opened=True)}"
        return f"{start}\n{rules}\n{self._body_rules(tools, literal)}"

    def _call_rule(self, literal: Callable[[str], str], opened: bool = False) -> str:
        parts = [] if opened or not self.open else [literal(self.open)]
        parts.append("call")
        if self.close:
            parts.append(literal(self.close))
        # A marker spelled "" is a stop token (FunctionGemma may stop at its call's end): the stop ends the call.
        return " ".join(p for p in parts if p)

    def _body_rules(self, tools: list[dict], literal: Callable[[str], str]) -> str:
        if self.body == "functiongemma":
            return _functiongemma_rules(tools, literal)
        options = [
            {
                "type": "object",
                "properties": {"name": {"const": tool_name(t)}, self.args_key: _strict(tool_parameters(t))},
                "required": ["name", self.args_key],
                "additionalProperties": False,
            }
            for t in tools
        ]
        schema: dict[str, Any] = {"anyOf": options} if len(options) > 1 else options[0]
        # Compact JSON: a small model given free whitespace fills a forced call with blank lines.
        schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
        body = '"\\n" body "\\n"' if self.own_line else "body"
        return f"call: {body}\nbody: %json {json.dumps(schema)}"


def _strict(parameters: dict) -> dict:
    """The parameters' schema for a forced call: a model must not invent properties the tool does not take."""
    schema = dict(parameters)
    if schema.get("type", "object") == "object" and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    schema.setdefault("properties", {})
    return schema


def _functiongemma_rules(tools: list[dict], literal: Callable[[str], str]) -> str:
    """FunctionGemma's `call:NAME{key:value,...}`: required arguments in order, optional ones after them in order;
    strings between <escape> tokens, numbers and booleans bare, enums as their values."""
    esc = literal(ESCAPE)
    rules = [f"call: {' | '.join(f'call_{i}' for i in range(len(tools)))}"]
    rules.append("STR: /[^<]*/")  # <escape> is a special token; `<` is the one character that could start text tags
    rules.append("NUM: /-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?/")
    rules.append('INT: /-?(0|[1-9][0-9]*)/\nBOOL: "true" | "false"')
    rules.append(f'value: {esc} STR {esc} | NUM | BOOL | "[" (value ("," value)*)? "]" | "{{" (pair ("," pair)*)? "}}"')
    rules.append('pair: /[A-Za-z_][A-Za-z0-9_]*/ ":" value')
    for i, tool in enumerate(tools):
        params = tool_parameters(tool)
        props = params.get("properties", {})
        required = [k for k in params.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        items = [f'"{k}:" {_fg_value(props[k], esc)}' for k in required]
        body = ' "," '.join(items)
        for k in optional:
            item = f'"{k}:" {_fg_value(props[k], esc)}'
            body = f'{body} ("," {item})?' if body else f"({item})?"
        rules.append(
            f'call_{i}: "call:{tool_name(tool)}{{" {body} "}}"' if body else f'call_{i}: "call:{tool_name(tool)}{{}}"'
        )
    return "\n".join(rules)


def _fg_value(schema: dict, esc: str) -> str:
    if "enum" in schema:
        return " | ".join(
            f"{esc} {json.dumps(str(v))} {esc}" if isinstance(v, str) else json.dumps(json.dumps(v))
            for v in schema["enum"]
        ).join("()")
    kind = schema.get("type")
    if kind == "string" and isinstance(schema.get("maxLength"), int):
        return f"{esc} /[^<]{{0,{schema['maxLength']}}}/ {esc}"
    return {"string": f"{esc} STR {esc}", "integer": "INT", "number": "NUM", "boolean": "BOOL"}.get(kind, "value")


def _parse_llama3(reply: str) -> tuple[str, list[ToolCall]]:
    body = reply.strip()
    tagged = body.startswith("<|python_tag|>")
    body = body.removeprefix("<|python_tag|>").strip()
    if not body.startswith("{"):
        if tagged:
            raise ToolError(f"<|python_tag|> call: not a JSON call: {body[:80]!r}")
        return reply.strip(), []
    decoder, calls, i = json.JSONDecoder(), [], 0
    try:
        while i < len(body):
            obj, i = decoder.raw_decode(body, i)
            calls.append(call_from(obj, "JSON call"))
            i = re.compile(r"[\s;]*").match(body, i).end()
    except (json.JSONDecodeError, ToolError) as e:
        if tagged:
            raise ToolError(f"<|python_tag|> call: {e}") from None
        return reply.strip(), []  # a reply that merely begins with `{` is text
    return "", calls


def _parse_generic(reply: str) -> tuple[str, list[ToolCall]]:
    """The first JSON object anywhere in the reply with a name and arguments (or parameters)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            obj, end = decoder.raw_decode(reply, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str) and ("arguments" in obj or "parameters" in obj):
            return (reply[: match.start()] + reply[end:]).strip(), [call_from(obj, "JSON call")]
    return reply.strip(), []


_JSON_INSTRUCTIONS = "You can call these functions. To call one, reply with nothing but {example}.\n\nThe functions:\n"
FORMATS = {
    f.name: f
    for f in (
        ToolFormat("hermes", "<tool_call>", "</tool_call>", own_line=True),
        ToolFormat("phi4", "<|tool_call|>", "<|/tool_call|>"),
        ToolFormat("llama3", "", "", args_key="parameters"),
        ToolFormat(
            "gemma",
            "```tool_code",
            "```",
            args_key="parameters",
            own_line=True,
            instructions=_JSON_INSTRUCTIONS.format(
                example='```tool_code\n{"name": "function_name", "parameters": {...}}\n```'
            ),
        ),
        ToolFormat("functiongemma", "<start_function_call>", "<end_function_call>", body="functiongemma"),
        ToolFormat(
            "generic",
            "",
            "",
            instructions=_JSON_INSTRUCTIONS.format(example='{"name": "function_name", "arguments": {...}}'),
        ),
    )
}
# The call syntax of a registered model family (`ModelSpec.family`).
FAMILY_FORMATS = {"qwen2": "hermes", "qwen3": "hermes", "qwen3.5": "hermes", "phi3": "phi4", "llama": "llama3"}
FAMILY_FORMATS.update({"gemma": "gemma", "gemma4": "gemma", "smollm3": "hermes", "granite": "generic"})
# What a chat template writes (or reads) when it handles a family's tool calls.
_TEMPLATE_SIGNS = (
    ("start_function_declaration", "functiongemma"),
    ("<start_function_call>", "functiongemma"),
    ("<tool_call>", "hermes"),
    ("<|tool_call|>", "phi4"),
    ("<|tool|>", "phi4"),
    ("<|python_tag|>", "llama3"),
    ("<|start_header_id|>", "llama3"),
    ("<start_of_turn>", "gemma"),
)


def tool_format(template_text: str | None = None, family: str | None = None) -> ToolFormat:
    """The call syntax a model writes: from what its chat template says about tools, else its family's, else the
    generic one (a JSON object with a name and arguments)."""
    for sign, name in _TEMPLATE_SIGNS:
        if template_text and sign in template_text:
            return FORMATS[name]
    return FORMATS[FAMILY_FORMATS.get(family or "", "generic")]


def check_calls(calls: list[ToolCall], tools: list[dict]) -> None:
    """Every call names one of `tools` (a model may name a function it was never offered)."""
    names = [tool_name(t) for t in tools]
    for call in calls:
        if call.name not in names:
            raise ToolError(f"the model called {call.name!r}, which is not one of the tools ({', '.join(names)})")


def tool_constraint(
    tools: list[dict], fmt: ToolFormat, choice: str, literal: Callable[[str], str]
) -> Constraint | None:
    """The grammar of `--tool-choice`: `required` a call, `auto` text or a call once opened, `none` nothing."""
    if choice not in TOOL_CHOICES:
        raise ToolError(f"tool choice must be one of {', '.join(TOOL_CHOICES)}, got {choice!r}")
    if choice == "none":
        return None
    grammar = fmt.call_grammar(tools, literal) if choice == "required" else fmt.auto_grammar(tools, literal)
    return Constraint.lark(grammar, f"the {fmt.name} tool-call grammar ({choice})")


def tool_instructions(tools: list[dict], fmt: ToolFormat) -> str:
    """The tools as text, for a chat template that has no place for them."""
    lines = [json.dumps(t["function"], ensure_ascii=False) for t in tools]
    return (fmt.instructions or FORMATS["generic"].instructions) + "\n".join(lines)


def with_tool_instructions(messages: list[dict], instructions: str, system_turn: bool = True) -> list[dict]:
    """`messages` with `instructions` opening the system message (one is added when there is none); without a
    `system_turn` in the prompt format (Gemma's), opening the first user message instead."""
    role = "system" if system_turn else "user"
    for i, message in enumerate(messages):
        if message.get("role") == role:
            merged = dict(message, content=f"{instructions}\n\n{message.get('content') or ''}".rstrip())
            return [*messages[:i], merged, *messages[i + 1 :]]
        if role == "system":
            break
    return [{"role": role, "content": instructions}, *messages]
