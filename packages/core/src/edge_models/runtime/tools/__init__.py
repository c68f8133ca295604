"""Tool calling: definitions (`definitions`), calls parsed out of replies (`calls`), and each family's call syntax
with the grammars that constrain a reply to it (`formats`)."""

from edge_models.runtime.tools.calls import ToolCall
from edge_models.runtime.tools.definitions import (
    TOOL_CHOICES,
    ToolError,
    function_schema,
    normalize_tools,
    parse_docstring,
    read_tools,
    type_schema,
)
from edge_models.runtime.tools.formats import (
    FAMILY_FORMATS,
    FORMATS,
    ToolFormat,
    check_calls,
    tool_constraint,
    tool_format,
    tool_instructions,
    with_tool_instructions,
)

__all__ = [
    "FAMILY_FORMATS",
    "FORMATS",
    "TOOL_CHOICES",
    "ToolCall",
    "ToolError",
    "ToolFormat",
    "check_calls",
    "function_schema",
    "normalize_tools",
    "parse_docstring",
    "read_tools",
    "tool_constraint",
    "tool_format",
    "tool_instructions",
    "type_schema",
    "with_tool_instructions",
]
