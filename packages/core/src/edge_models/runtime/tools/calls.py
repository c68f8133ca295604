"""Tool calls and the pieces of their syntaxes that replies are parsed with (JSON objects, Python-style calls,
FunctionGemma's `{key:value}` arguments)."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from edge_models.runtime.tools.definitions import ToolError

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


def call_from(obj: Any, where: str) -> ToolCall:
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


def json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolError(f"{where}: not JSON ({e.msg} at column {e.colno}): {text[:80]!r}") from None


def python_calls(text: str, where: str) -> list[ToolCall]:
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

ESCAPE = "<escape>"


def _functiongemma_value(text: str, i: int, where: str) -> tuple[Any, int]:
    if text.startswith(ESCAPE, i):
        end = text.find(ESCAPE, i + len(ESCAPE))
        if end < 0:
            raise ToolError(f"{where}: a string opened with {ESCAPE} is never closed")
        return text[i + len(ESCAPE) : end], end + len(ESCAPE)
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


def functiongemma_call(body: str, where: str) -> ToolCall:
    head = re.match(r"\s*call:([\w.-]+)", body)
    if head is None or not body[head.end() :].lstrip().startswith("{"):
        raise ToolError(f"{where}: expected call:NAME{{...}}, got {body[:60]!r}")
    start = body.index("{", head.end())
    args, end = _functiongemma_value(body, start, where)
    if body[end:].strip():
        raise ToolError(f"{where}: text after the arguments: {body[end:][:40]!r}")
    return ToolCall(head.group(1), args)
