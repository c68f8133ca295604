"""The pooling a sentence-transformers checkpoint declares (`modules.json`, `1_Pooling/config.json`), as a
PoolingConfig; anything we would compute differently is refused, naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

from edge_models.config import PoolingConfig

_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
_UNSUPPORTED_MODES = (
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


class PoolingConfigError(ValueError):
    pass


def read_pooling(checkpoint: str | Path) -> PoolingConfig:
    """The checkpoint's pooling. A plain HF encoder directory (no `modules.json`) gets mean pooling without
    normalisation, the usual way to embed with a BERT that has no sentence-transformers head."""
    root = Path(checkpoint)
    root = root if root.is_dir() else root.parent
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return PoolingConfig()
    modules = _json(modules_file)
    if not isinstance(modules, list):
        raise PoolingConfigError(f"{modules_file}: expected a list of modules")
    mode, normalize = "mean", False
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = module.get("type", "")
        if kind == _TRANSFORMER:
            continue
        if kind == _POOLING:
            mode = _pooling_mode(root / module.get("path", "1_Pooling") / "config.json")
        elif kind == _NORMALIZE:
            normalize = True
        else:
            raise PoolingConfigError(
                f"{modules_file}: module {module.get('name', '?')!r} of type {kind!r} is not supported "
                f"(supported: {_TRANSFORMER}, {_POOLING}, {_NORMALIZE})"
            )
    return PoolingConfig(mode=mode, normalize=normalize)


def _pooling_mode(path: Path) -> str:
    if not path.is_file():
        raise PoolingConfigError(f"{path} is missing: modules.json names a Pooling module there")
    config = _json(path)
    for field in _UNSUPPORTED_MODES:
        if config.get(field):
            raise PoolingConfigError(f"{path}: {field} is not supported (supported: {', '.join(_MODES)})")
    chosen = [field for field in _MODES if config.get(field)]
    if len(chosen) != 1:
        raise PoolingConfigError(
            f"{path}: exactly one of {', '.join(_MODES)} must be true, found {', '.join(chosen) or 'none'}"
        )
    return _MODES[chosen[0]]


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PoolingConfigError(f"{path} is not readable JSON: {e}") from None
