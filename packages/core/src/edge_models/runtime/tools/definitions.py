"""Tool definitions: OpenAI-style dicts, or Python functions described by their signature and docstring.

A tool is `{"type": "function", "function": {"name", "description", "parameters"}}`, the shape chat templates read
from their `tools` variable. Bare function dicts (`{"name", "parameters", ...}`) are wrapped into it.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

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


def tool_parameters(tool: dict) -> dict:
    return tool["function"].get("parameters", {"type": "object", "properties": {}})


def tool_name(tool: dict) -> str:
    return tool["function"]["name"]
