"""Operator codes: which operator a code names, and finding or adding a code in a model's table."""

from __future__ import annotations

# Codes past 127 live in `builtinCode` only, `deprecatedBuiltinCode` holding 127 (PLACEHOLDER_FOR_GREATER_OP_CODES);
# older writers fill only `deprecatedBuiltinCode`. The larger of the two is the operator either way.
_DEPRECATED_LIMIT = 127


def builtin_operator(builtin_code: int, deprecated_builtin_code: int) -> int:
    """The `BuiltinOperator` of a code, from its two fields."""
    return max(builtin_code, deprecated_builtin_code)


def _key(code) -> tuple:
    return builtin_operator(code.builtinCode, code.deprecatedBuiltinCode), code.customCode, code.version


def code_index(model, code) -> int:
    """The index of an operator code equal to `code` (an `OperatorCodeT`: same operator, custom code and version) in
    the object-API `model`'s table, appending `code` when there is none."""
    wanted = _key(code)
    for k, mine in enumerate(model.operatorCodes):
        if _key(mine) == wanted:
            return k
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def builtin_code(operator: int, version: int = 1):
    """A new `OperatorCodeT` for the builtin `operator`."""
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode = operator, min(operator, _DEPRECATED_LIMIT)
    code.version = version
    return code
