"""Helpers for plugins' `config_from_hf`: reading HF config.json dicts of any vintage."""

from __future__ import annotations

import json
from pathlib import Path


class UnsupportedConfigError(ValueError):
    """A config.json field this model family cannot honour."""


def read_config(checkpoint: str | Path) -> dict:
    path = Path(checkpoint)
    path = path if path.name == "config.json" else path / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no config.json next to the checkpoint") from None
    except ValueError as e:
        raise UnsupportedConfigError(f"{path}: not valid JSON ({e})") from None


def require(hf: dict, key: str):
    if hf.get(key) is None:
        raise UnsupportedConfigError(f"config.json has no {key!r}")
    return hf[key]


def expect(hf: dict, key: str, allowed: tuple, default=None) -> object:
    """The value of `key`, which must be one of `allowed`; the error names the field."""
    value = hf.get(key, default)
    if value not in allowed:
        raise UnsupportedConfigError(
            f"config.json field {key!r} = {value!r} is not supported; supported: {list(allowed)}"
        )
    return value


def rope_parameters(hf: dict, layer_type: str = "full_attention") -> tuple[float, dict | None, float]:
    """(base, scaling or None, rotary fraction) for one layer type.

    transformers >= 5 writes `rope_parameters` (per layer type for Gemma 3);
    older files carry `rope_theta`, `rope_scaling`, `partial_rotary_factor` and
    Gemma 3's `rope_local_base_freq`.
    """
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get(layer_type), dict):
        params = params[layer_type]
    if isinstance(params, dict) and ("rope_theta" in params or "rope_type" in params):
        params = dict(params)
    else:
        params = dict(hf.get("rope_scaling") or {})
        if layer_type == "sliding_attention" and "rope_local_base_freq" in hf:
            params = {"rope_theta": hf["rope_local_base_freq"]}
        else:
            params["rope_theta"] = hf.get("rope_theta", 10_000.0)
        if "partial_rotary_factor" in hf:
            params["partial_rotary_factor"] = hf["partial_rotary_factor"]
    base = float(params.pop("rope_theta", 10_000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "proportional":
        # Gemma 4: the factor says how much of a whole-head rotation turns (layers.rope), so the scaling keeps it.
        params.setdefault("partial_rotary_factor", 1.0)
        return base, params, 1.0
    fraction = float(params.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
    if kind not in ("default", "linear", "llama3", "longrope"):
        raise UnsupportedConfigError(
            f"config.json rope scaling type {kind!r} is not supported; supported: default, linear, llama3, longrope, "
            "proportional"
        )
    if kind == "longrope":
        # Older files keep these beside rope_scaling; the extension factor defaults to the ratio of the two lengths.
        original = params.get("original_max_position_embeddings") or hf.get("original_max_position_embeddings")
        if not original:
            raise UnsupportedConfigError("config.json longrope scaling needs original_max_position_embeddings")
        params["original_max_position_embeddings"] = original
        if params.get("factor") is None:
            params["factor"] = hf.get("max_position_embeddings", original) / original
        for key in ("short_factor", "long_factor"):
            if not isinstance(params.get(key), list):
                raise UnsupportedConfigError(f"config.json longrope scaling needs a {key!r} list")
    return base, (params if kind != "default" else None), fraction


# HF layer type -> ours. Attention types every decoder family reads; the others only families that ask for them.
ATTENTION_LAYER_TYPES = {"sliding_attention": "sliding", "full_attention": "global"}
STATE_LAYER_TYPES = {"conv": "conv", "linear_attention": "linear"}


def layer_types(hf: dict, num_layers: int, accept: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """HF `layer_types` ("sliding_attention"/"full_attention", and the types named in `accept`: "conv",
    "linear_attention") as ours ("sliding"/"global"/"conv"/"linear")."""
    types = hf.get("layer_types")
    if types is None:
        return None
    mapping = {**ATTENTION_LAYER_TYPES, **{t: STATE_LAYER_TYPES[t] for t in accept}}
    unknown = sorted(set(types) - set(mapping))
    if unknown:
        raise UnsupportedConfigError(
            f"config.json layer_types has unsupported entries {unknown} (supported: {sorted(mapping)})"
        )
    if len(types) != num_layers:
        raise UnsupportedConfigError(f"config.json layer_types has {len(types)} entries for {num_layers} layers")
    return tuple(mapping[t] for t in types)


def nope_layers(hf: dict, num_layers: int) -> tuple[int, ...]:
    """The layers without RoPE (SmolLM3), as transformers reads them: `no_rope_layers` holds one flag per layer,
    1 for a layer that rotates q and k and 0 for one that does not; without it, every `no_rope_layer_interval`-th
    layer goes without (the 4th, 8th, ... by default). A list wins over an interval given beside it."""
    flags = hf.get("no_rope_layers")
    if flags is None:
        interval = hf.get("no_rope_layer_interval")
        interval = 4 if interval is None else interval
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise UnsupportedConfigError(f"config.json no_rope_layer_interval = {interval!r} is not a positive int")
        return tuple(i for i in range(num_layers) if (i + 1) % interval == 0)
    # transformers reads the first num_layers flags of a list that may be longer.
    if not isinstance(flags, list) or len(flags) < num_layers or not set(flags[:num_layers]) <= {0, 1}:
        raise UnsupportedConfigError(
            f"config.json no_rope_layers = {flags!r} is not a list of {num_layers} 0/1 flags (one per layer)"
        )
    return tuple(i for i in range(num_layers) if not flags[i])


def check_fields(hf: dict, allowed: dict[str, tuple], problems: list[str] | None = None) -> None:
    """Every field of `hf` whose value is not in its `allowed` tuple (a missing field counts as None), plus any
    `problems` found already, raised as one UnsupportedConfigError naming them all."""
    problems = list(problems or [])
    for key, values in allowed.items():
        if hf.get(key) not in values:
            problems.append(f"{key!r} = {hf.get(key)!r} (supported: {list(values)})")
    if problems:
        arch = ", ".join(hf.get("architectures") or []) or "the model"
        raise UnsupportedConfigError(
            f"config.json ({arch}) has {len(problems)} unsupported setting(s):\n  " + "\n  ".join(problems)
        )


def attempt(problems: list[str], read, *args):
    """`read(*args)`, or None with its UnsupportedConfigError's message added to `problems`."""
    try:
        return read(*args)
    except UnsupportedConfigError as e:
        problems.append(str(e).removeprefix("config.json "))
        return None


def gated_silu_decoder(
    hf: dict,
    problems: list[str] | None = None,
    *,
    family: str,
    allowed: dict[str, tuple] | None = None,
    qkv_bias: bool = False,
    qk_norm: bool = False,
    partial_rotary: bool = False,
    sliding_window: int | None = None,
    layer_types: tuple[str, ...] | None = None,
    eps: float = 1e-6,
    max_seq_len: int = 2048,
):
    """The decoder most families share (Llama, Mistral, Qwen, Phi-3): RMSNorm, RoPE, grouped-query attention, a
    gated SiLU MLP, `head_dim` given or derived. A family passes what differs; `problems` it found already are raised
    together with every unsupported field found here. A `sliding_window` without `layer_types` slides on every
    layer."""
    from edge_models.config import AttentionConfig, MLPConfig, ModelConfig, NormConfig, RopeConfig

    problems = list(problems or [])
    rope = attempt(problems, rope_parameters, hf)
    if rope is not None and rope[2] != 1.0 and not partial_rotary:
        problems.append(f"partial rotary factor {rope[2]} ({family} rotates whole heads)")
    check_fields(hf, {"hidden_act": ("silu", None), **(allowed or {})}, problems)
    hidden, heads, layers = (
        require(hf, "hidden_size"),
        require(hf, "num_attention_heads"),
        require(hf, "num_hidden_layers"),
    )
    eps = hf.get("rms_norm_eps", eps)
    if sliding_window and layer_types is None:
        layer_types = ("sliding",) * layers
    return ModelConfig(
        vocab_size=require(hf, "vocab_size"),
        hidden_size=hidden,
        num_layers=layers,
        attention=AttentionConfig(
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            qkv_bias=qkv_bias,
            qk_norm=NormConfig(kind="rms", eps=eps) if qk_norm else None,
            sliding_window=sliding_window,
        ),
        mlp=MLPConfig(intermediate_size=require(hf, "intermediate_size"), activation="silu", gated=True),
        norm=NormConfig(kind="rms", eps=eps),
        rope=RopeConfig(base=rope[0], scaling=rope[1], rotary_fraction=rope[2]),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        layer_types=layer_types if sliding_window else None,
        max_seq_len=hf.get("max_position_embeddings", max_seq_len),
    )
