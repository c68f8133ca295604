"""Tool calling: tool definitions (OpenAI-style dicts, or Python functions described by their signature and
docstring), the call syntax of each model family, parsing the calls out of a reply, and the llguidance grammars that
make a reply a valid call (`required`) or free text that becomes a valid call once it opens one (`auto`).

A tool is `{"type": "function", "function": {"name", "description", "parameters"}}`, the shape chat templates read
from their `tools` variable. Bare function dicts (`{"name", "parameters", ...}`) are wrapped into it.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from edge_models.runtime.constraints import Constraint

TOOL_CHOICES = ("auto", "required", "none")


class ToolError(ValueError):
    """Tools that cannot be offered (bad definitions), or a reply whose tool call cannot be read."""


# --- tool definitions -------------------------------------------------------------------------------------------

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
_PLAIN_TYPES = {**{t: {"type": n} for t, n in _JSON_TYPES.items()}, list: {"type": "array"}, tuple: {"type": "array"}}
_PLAIN_TYPES.update({dict: {"type": "object"}, Any: {}})


def _enum_schema(values: list, where: str) -> dict:
    if not values or any(type(v) not in _JSON_TYPES for v in values):
        raise ToolError(f"{where}: the choices must be JSON scalars (str, int, float, bool, None), got {values!r}")
    kinds = list(dict.fromkeys(_JSON_TYPES[type(v)] for v in values))
    return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": values}


def type_schema(hint: Any, where: str = "the type hint") -> dict:
    """The JSON schema of a parameter's type hint, in the conventions chat templates were trained with
    (`transformers.utils.get_json_schema`): Optional adds `nullable`, a union of plain types is a list of types,
    Literal and Enum become `enum`, list[X] has `items`, tuple[X, Y] has `prefixItems`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is None:
        if isinstance(hint, type) and issubclass(hint, Enum):
            return _enum_schema([m.value for m in hint], where)
        if hint in _PLAIN_TYPES:
            return dict(_PLAIN_TYPES[hint])
        raise ToolError(f"{where}: {hint!r} has no JSON type (use str, int, float, bool, list, dict, Literal, Enum)")
    if origin is Union or origin is types.UnionType:
        members = [type_schema(a, where) for a in args if a is not type(None)]
        if len(members) == 1:
            schema = members[0]
        elif all(m.keys() == {"type"} and isinstance(m["type"], str) for m in members):
            names = sorted({m["type"] for m in members})
            schema = {"type": names[0] if len(names) == 1 else names}
        else:
            schema = {"anyOf": members}
        if type(None) in args:
            schema["nullable"] = True
        return schema
    if origin is Literal:
        return _enum_schema(list(args), where)
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], where)} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 1 or ... in args:
            raise ToolError(f"{where}: write a variable-length tuple as list[...]")
        return {"type": "array", "prefixItems": [type_schema(a, where) for a in args]} if args else {"type": "array"}
    if origin is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = type_schema(args[1], where)
        return schema
    raise ToolError(f"{where}: {hint!r} has no JSON type")


_SECTION = r"(?:Args|Returns|Raises):"


def parse_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, {argument: description}, returns) of a Google-style docstring."""
    doc = inspect.cleandoc(doc)
    description = re.split(rf"\n\s*{_SECTION}", "\n" + doc, maxsplit=1)[0].strip()
    arguments: dict[str, str] = {}
    block = re.search(rf"\n\s*Args:\n(.*?)(?=\n\s*{_SECTION}|\Z)", "\n" + doc, re.DOTALL)
    if block:
        lines = [line for line in block.group(1).split("\n") if line.strip()]
        indent = min(len(line) - len(line.lstrip()) for line in lines) if lines else 0
        name = None
        for line in lines:
            # An argument line is at the block's indentation: `name: text` or `name (type): text`.
            head = re.match(r"(\w+)\s*(?:\([^()\n]*\))?\s*:\s*(.*)", line[indent:])
            if len(line) - len(line.lstrip()) == indent and head:
                name = head.group(1)
                arguments[name] = head.group(2).strip()
            elif name is not None:
                arguments[name] = f"{arguments[name]} {line.strip()}".strip()
    returns = re.search(r"\n\s*Returns:\n\s*(.*?)(?=\n\s*Raises:|\Z)", "\n" + doc, re.DOTALL)
    return description, arguments, (returns.group(1).strip() if returns else None)


def function_schema(func: Callable) -> dict:
    """A tool definition of a Python function: its name, the docstring's description (Google style, every argument
    described under `Args:`, optionally `(choices: [...])` at the end of a description) and one property per
    parameter from its type hint; parameters without a default are required."""
    name = getattr(func, "__name__", "function")
    if not func.__doc__:
        raise ToolError(f"tool {name}: no docstring (it describes the function and each argument to the model)")
    description, described, returns = parse_docstring(func.__doc__)
    try:
        hints = get_type_hints(func)
    except Exception as e:  # noqa: BLE001 - any annotation that does not evaluate
        raise ToolError(f"tool {name}: its type hints do not evaluate ({e})") from None
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls") and params[0].annotation is inspect.Parameter.empty:
        params = params[1:]
    properties: dict[str, dict] = {}
    required = []
    for p in params:
        if p.name not in hints:
            raise ToolError(f"tool {name}: argument {p.name!r} has no type hint")
        if p.name not in described:
            raise ToolError(f"tool {name}: the docstring does not describe argument {p.name!r} (under Args:)")
        schema = type_schema(hints[p.name], f"tool {name}, argument {p.name!r}")
        text = described[p.name]
        choices = re.search(r"\(choices:\s*(.*?)\)\s*$", text, re.IGNORECASE)
        if choices:
            try:
                values = json.loads(choices.group(1))
            except json.JSONDecodeError:
                raise ToolError(f"tool {name}, argument {p.name!r}: (choices: ...) is not a JSON list") from None
            schema["enum"] = [v.strip() if isinstance(v, str) else v for v in values]
            text = text[: choices.start()].strip()
        schema["description"] = text
        properties[p.name] = schema
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    function: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if "return" in hints:
        try:
            function["return"] = type_schema(hints["return"])
            if returns is not None:
                function["return"]["description"] = returns
        except ToolError:
            pass  # templates rarely show the return type; one without a JSON type is left out
    return {"type": "function", "function": function}


def normalize_tools(tools: Sequence[dict | Callable], origin: str = "tools") -> list[dict]:
    """Tool definitions as chat templates read them, checked: each has a name (unique) and object parameters."""
    if isinstance(tools, dict) or not isinstance(tools, Sequence):
        raise ToolError(f"{origin}: a list of tool definitions, got {type(tools).__name__}")
    normalized, names = [], set()
    for i, tool in enumerate(tools):
        if callable(tool) and not isinstance(tool, dict):
            tool = function_schema(tool)
        if not isinstance(tool, dict):
            raise ToolError(f"{origin}: tool {i} is a {type(tool).__name__}, not a definition or a function")
        if "function" in tool:
            if tool.get("type", "function") != "function" or not isinstance(tool["function"], dict):
                raise ToolError(f"{origin}: tool {i} is not {{'type': 'function', 'function': {{...}}}}")
            function = tool["function"]
        else:
            function, tool = tool, {"type": "function", "function": tool}
        name = function.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
            raise ToolError(f"{origin}: tool {i} has no usable name (letters, digits, _ . -), got {name!r}")
        if name in names:
            raise ToolError(f"{origin}: two tools are named {name!r}")
        names.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ToolError(f"{origin}: tool {name!r}: parameters must be a JSON schema of type object")
        normalized.append(tool)
    if not normalized:
        raise ToolError(f"{origin}: no tools in the list")
    return normalized


def read_tools(path: str | Path) -> list[dict]:
    """Tool definitions from a JSON file: a list of definitions (or one object with a `tools` list)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise ToolError(f"{path}: not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ToolError(f"{path}: cannot read it ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("tools"), list):
        data = data["tools"]
    return normalize_tools(data, str(path))


def _parameters(tool: dict) -> dict:
    return tool["function"].get("parameters", {"type": "object", "properties": {}})


def _name(tool: dict) -> str:
    return tool["function"]["name"]


# --- calls ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}

    def for_template(self) -> dict:
        """The entry of an assistant message's `tool_calls`, as HF chat templates read it (arguments a dict)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def _call_from(obj: Any, where: str) -> ToolCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ToolError(f'{where}: a call is a JSON object with a "name", got {json.dumps(obj)[:80]}')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # OpenAI's wire format carries the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            raise ToolError(f"{where}: the arguments of {obj['name']} are a string that is not JSON") from None
    if not isinstance(args, dict):
        raise ToolError(f"{where}: the arguments of {obj['name']} are not an object")
    return ToolCall(obj["name"], args)


def _json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolError(f"{where}: not JSON ({e.msg} at column {e.colno}): {text[:80]!r}") from None


def _python_calls(text: str, where: str) -> list[ToolCall]:
    """`name(a=1, b="x")` lines (Gemma's tool_code blocks), optionally in a list."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ToolError(f"{where}: neither JSON nor a Python call: {text.strip()[:80]!r}") from None
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    calls = []
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) and not node.args):
            raise ToolError(f"{where}: not a call with keyword arguments: {ast.unparse(node)[:80]!r}")
        try:
            args = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ToolError(f"{where}: the arguments of {ast.unparse(node.func)} are not literals") from None
        calls.append(ToolCall(ast.unparse(node.func), args))
    return calls


# --- FunctionGemma's argument syntax: {key:value,...}, strings between <escape> tokens ---------------------------

_ESCAPE = "<escape>"


def _functiongemma_value(text: str, i: int, where: str) -> tuple[Any, int]:
    if text.startswith(_ESCAPE, i):
        end = text.find(_ESCAPE, i + len(_ESCAPE))
        if end < 0:
            raise ToolError(f"{where}: a string opened with {_ESCAPE} is never closed")
        return text[i + len(_ESCAPE) : end], end + len(_ESCAPE)
    if text.startswith("{", i):
        obj: dict[str, Any] = {}
        i += 1
        while not text.startswith("}", i):
            key = re.compile(r"\s*([^:{}\s,]+)\s*:").match(text, i)
            if key is None:
                raise ToolError(f"{where}: expected key: at {text[i : i + 20]!r}")
            obj[key.group(1)], i = _functiongemma_value(text, key.end(), where)
            i = re.compile(r"\s*,?\s*").match(text, i).end()
            if i >= len(text):
                raise ToolError(f"{where}: an argument list is never closed with }}")
        return obj, i + 1
    if text.startswith("[", i):
        items: list[Any] = []
        i += 1
        while not text.startswith("]", i):
            item, i = _functiongemma_value(text, i, where)
            items.append(item)
            i = re.compile(r"\s*,?\s*").match(text, i).end()
            if i >= len(text):
                raise ToolError(f"{where}: a list is never closed with ]")
        return items, i + 1
    bare = re.compile(r"[^,}\]]+").match(text, i)
    if bare is None:
        raise ToolError(f"{where}: expected a value at {text[i : i + 20]!r}")
    word = bare.group(0).strip()
    try:
        return json.loads(word), bare.end()
    except json.JSONDecodeError:
        return word, bare.end()


def _functiongemma_call(body: str, where: str) -> ToolCall:
    head = re.match(r"\s*call:([\w.-]+)", body)
    if head is None or not body[head.end() :].lstrip().startswith("{"):
        raise ToolError(f"{where}: expected call:NAME{{...}}, got {body[:60]!r}")
    start = body.index("{", head.end())
    args, end = _functiongemma_value(body, start, where)
    if body[end:].strip():
        raise ToolError(f"{where}: text after the arguments: {body[end:][:40]!r}")
    return ToolCall(head.group(1), args)


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
            return [_functiongemma_call(body, where)]
        if self.name == "gemma" and not body.lstrip().startswith(("{", "[")):
            return _python_calls(body, where)
        value = _json_value(body, where)
        return [_call_from(v, where) for v in (value if isinstance(value, list) else [value])]

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
                "properties": {"name": {"const": _name(t)}, self.args_key: _strict(_parameters(t))},
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
    esc = literal(_ESCAPE)
    rules = [f"call: {' | '.join(f'call_{i}' for i in range(len(tools)))}"]
    rules.append("STR: /[^<]*/")  # <escape> is a special token; `<` is the one character that could start text tags
    rules.append("NUM: /-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][-+]?[0-9]+)?/")
    rules.append('INT: /-?(0|[1-9][0-9]*)/\nBOOL: "true" | "false"')
    rules.append(f'value: {esc} STR {esc} | NUM | BOOL | "[" (value ("," value)*)? "]" | "{{" (pair ("," pair)*)? "}}"')
    rules.append('pair: /[A-Za-z_][A-Za-z0-9_]*/ ":" value')
    for i, tool in enumerate(tools):
        params = _parameters(tool)
        props = params.get("properties", {})
        required = [k for k in params.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        items = [f'"{k}:" {_fg_value(props[k], esc)}' for k in required]
        body = ' "," '.join(items)
        for k in optional:
            item = f'"{k}:" {_fg_value(props[k], esc)}'
            body = f'{body} ("," {item})?' if body else f"({item})?"
        rules.append(f'call_{i}: "call:{_name(tool)}{{" {body} "}}"' if body else f'call_{i}: "call:{_name(tool)}{{}}"')
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
            calls.append(_call_from(obj, "JSON call"))
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
            return (reply[: match.start()] + reply[end:]).strip(), [_call_from(obj, "JSON call")]
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
    names = [_name(t) for t in tools]
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
