"""Quantization recipes: user-facing names mapped onto ai-edge-quantizer configs.

A recipe assigns a scheme to each component (default, embedding, attention,
feedforward, lm_head). Components are found by the op output names litert-torch
writes, which carry our module paths (e.g. `edge_models.layers.attention.Attention_attn`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["float", "weight_only", "dynamic"]


@dataclass(frozen=True)
class Scheme:
    description: str
    bits: int  # 32 means "leave in float32"
    mode: Mode
    block_size: int | None = None  # None: one scale per output channel
    # Integers and scales chosen from calibration activations (GPTQ) instead of rounded to nearest; same format.
    calibrated: bool = False


# Blocks of 32 are the finest int4 offered: LiteRT's fast (XNNPACK) blockwise kernels take multiples of 32. A file
# with blocks of 16 runs, but on a slow fallback: a 65,536 x 256 tied head decoded 49 ms/token against 0.25 ms with
# blocks of 32 (measured), although on Gemma 3 270M blocks of 16 in the tied embedding/head would cut its perplexity
# cost from +5.1 % to +3.9 % (emulated, GPTQ, rest in float).
SCHEMES: dict[str, Scheme] = {
    "fp32": Scheme("no quantization: float32 weights and compute", 32, "float"),
    "fp16": Scheme("float16 weights, float32 compute", 16, "float"),
    "int8-weight": Scheme("int8 per-channel weights, dequantized to float for compute", 8, "weight_only"),
    "int8": Scheme("int8 per-channel weights, dynamic-range int8 compute (default)", 8, "dynamic"),
    "int4-block32": Scheme("int4 weights in blocks of 32, dynamic-range compute", 4, "dynamic", 32),
    "int4-block128": Scheme("int4 weights in blocks of 128, dynamic-range compute", 4, "dynamic", 128),
    "int8-gptq": Scheme("int8 like `int8`, integers chosen by GPTQ on calibration text", 8, "dynamic", None, True),
    "int4-block32-gptq": Scheme(
        "int4 like `int4-block32`, integers and scales chosen by GPTQ on calibration text", 4, "dynamic", 32, True
    ),
    "int4-block128-gptq": Scheme(
        "int4 like `int4-block128`, integers and scales chosen by GPTQ on calibration text", 4, "dynamic", 128, True
    ),
}

COMPONENTS: dict[str, str] = {
    "default": r".*",
    "embedding": r"Embedding_embed_tokens",
    "attention": r"edge_models\.layers\.attention\.Attention_attn",
    "feedforward": r"edge_models\.layers\.mlp\.",
    # The head's op output takes the signature output's name when nothing follows it.
    "lm_head": r"LMHead_lm_head|_logits_output$",
}

DEFAULT_RECIPE = "int8"

# Which of our module paths belong to each component (for checks made before conversion).
_MODULE_MARKERS = {"embedding": "embed_tokens", "attention": ".attn.", "feedforward": ".mlp.", "lm_head": "lm_head"}
# One decoder block's attention or feed-forward (`layers.3.feedforward=int8`): what `auto` writes. Only the
# low-memory writer stores these; they override the component-wide parts.
_LAYER_PART = re.compile(r"layers\.(\d+)\.(attention|feedforward)")
# The first K rows of a tied embedding/LM head in a scheme of their own (`rows.65536=int8-gptq`): tokenizers number
# their pieces roughly by frequency, so those rows carry most of what a text reads and predicts.
_LEAD_ROWS = re.compile(r"rows\.(\d+)")
LEAD_ROWS_PARAM = "embed_tokens.lead_rows"
# Gemma 3n / 4's per-layer inputs, a part each (stored by the low-memory writer only, as layer parts are): the
# table, a lookup read one row per token like the embedding (E2B: half the parameters), and the small linear layers
# that mix its rows in (the model-wide projection and every block's gate). Not named, they take `default`.
PER_LAYER_PARTS: dict[str, tuple[str, ...]] = {
    "per_layer_table": ("per_layer_embedding.table",),
    "per_layer_projections": ("per_layer_embedding.model_projection", ".per_layer_gate."),
}


def per_layer_part(module_path: str) -> str | None:
    """The per-layer-input part a module or parameter path belongs to, if any."""
    return next((part for part, marks in PER_LAYER_PARTS.items() if any(m in module_path for m in marks)), None)


class RecipeError(ValueError):
    pass


@dataclass(frozen=True)
class Recipe:
    """Scheme name per component; components not named fall back to `default`."""

    text: str
    parts: tuple[tuple[str, str], ...]

    @property
    def is_calibrated(self) -> bool:
        return any(all_schemes()[s].calibrated for _, s in self.parts)

    @property
    def is_float32(self) -> bool:
        return all(all_schemes()[s].bits == 32 for _, s in self.parts)

    @property
    def lead_rows(self) -> tuple[int, str] | None:
        """(K, scheme) of a `rows.K=scheme` part, else None."""
        return next(((int(m.group(1)), s) for c, s in self.parts if (m := _LEAD_ROWS.fullmatch(c))), None)

    def scheme_name_for(self, module_path: str) -> str:
        """The scheme applied to one of our modules (paths as in `Decoder.named_modules()`)."""
        parts = dict(self.parts)
        if "lead_rows" in module_path and self.lead_rows:
            return self.lead_rows[1]
        if module_path.startswith("shortlist"):
            from edge_models.layers.shortlist import SHORTLIST_SCHEME

            return SHORTLIST_SCHEME
        ple = per_layer_part(module_path)
        if ple in parts:
            return parts[ple]
        layer = re.match(r"layers\.(\d+)\.", module_path)
        if layer:
            for component in ("attention", "feedforward"):
                key = f"layers.{layer.group(1)}.{component}"
                if key in parts and _MODULE_MARKERS[component] in module_path:
                    return parts[key]
        component = next(
            (c for c, marker in _MODULE_MARKERS.items() if c in parts and marker in module_path), "default"
        )
        return parts[component]

    def scheme_for(self, module_path: str) -> Scheme:
        return all_schemes()[self.scheme_name_for(module_path)]

    @property
    def has_layer_parts(self) -> bool:
        """Whether the recipe has parts only the low-memory writer stores (one block's, rows.K, per-layer inputs)."""
        return any(_LAYER_PART.fullmatch(c) or _LEAD_ROWS.fullmatch(c) or c in PER_LAYER_PARTS for c, _ in self.parts)

    def check_model(self, model) -> None:
        """Refuse, before minutes of conversion, what the quantizer would get wrong for this model."""
        layers = model.config.num_layers
        beyond = [c for c, _ in self.parts if (m := _LAYER_PART.fullmatch(c)) and int(m.group(1)) >= layers]
        if beyond:
            raise RecipeError(f"recipe {self.text!r} names {', '.join(beyond)}, but the model has {layers} layers")
        named = [c for c, _ in self.parts if c in PER_LAYER_PARTS]
        if named and getattr(model, "per_layer_embedding", None) is None:
            raise RecipeError(f"recipe {self.text!r} names {', '.join(named)}, but the model has no per-layer inputs")
        self.check_block_sizes(model)
        if self.lead_rows:
            k, _ = self.lead_rows
            if not model.config.tie_embeddings or self.unties(model):
                raise RecipeError(
                    f"recipe {self.text!r}: rows.K splits a tied embedding/LM head; this model's are "
                    + ("untied" if not model.config.tie_embeddings else "given two schemes")
                )
            if not 0 < k < model.config.vocab_size:
                raise RecipeError(
                    f"recipe {self.text!r}: rows.{k} must leave rows on both sides of a {model.config.vocab_size:,}-"
                    "token vocabulary"
                )
        if model.config.tie_embeddings and self.unties(model):
            embedding, head = self.scheme_name_for("embed_tokens"), self.scheme_name_for("lm_head")
            if 32 in (all_schemes()[embedding].bits, all_schemes()[head].bits):
                # One matrix with two schemes is stored once per scheme; with one of them float the file grows
                # instead of shrinking.
                raise RecipeError(
                    f"recipe {self.text!r}: this model ties its embedding and LM head (one matrix), but the recipe "
                    f"gives them different schemes (embedding={embedding}, lm_head={head}); give both the same, "
                    "or two quantized schemes (the matrix is then stored once in each)"
                )

    def unties(self, model) -> bool:
        """Whether a tied embedding and LM head get different schemes, and so are stored as two matrices (e.g. an
        int8 lookup, whose one row per token costs nothing to read, and an int4 head, read whole every token)."""
        tied = model.config.tie_embeddings
        return tied and self.scheme_name_for("embed_tokens") != self.scheme_name_for("lm_head")

    def check_block_sizes(self, model) -> None:
        """Blockwise schemes need every quantized input dimension to be a multiple of the block size;
        say which layers are not before spending minutes on a conversion that would fail."""
        from torch import nn

        from edge_models.layers.decoder import LMHead

        bad = []
        for path, module in model.named_modules():
            if isinstance(module, nn.Linear):
                dim = module.in_features
            elif isinstance(module, nn.Embedding):
                dim = module.embedding_dim  # hidden_size, or layers x dim for a per-layer table
            elif isinstance(module, LMHead):
                dim = model.config.hidden_size
            else:
                continue
            block = self.scheme_for(path).block_size
            if block and dim % block:
                bad.append(f"{path} (input dimension {dim})")
        if bad:
            shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            raise RecipeError(
                f"recipe {self.text!r}: block size does not divide {shown}; use a smaller block "
                "(int4-block32), per-channel int8, or a per-component mix"
            )


_extra_schemes: dict[str, Scheme] = {}


def register_scheme(name: str, description: str, scheme: Scheme) -> None:
    """Target of the `register_quant_recipes` hook."""
    if name in SCHEMES or name in _extra_schemes:
        raise RecipeError(f"quantization recipe {name!r} is already defined")
    _extra_schemes[name] = Scheme(description, scheme.bits, scheme.mode, scheme.block_size, scheme.calibrated)


_plugins_asked = False


def all_schemes() -> dict[str, Scheme]:
    """Built-in schemes plus those plugins add through the `register_quant_recipes` hook."""
    global _plugins_asked
    if not _plugins_asked:
        _plugins_asked = True
        from edge_models.plugins import plugin_manager

        plugin_manager().hook.register_quant_recipes(register=register_scheme)
    return {**SCHEMES, **_extra_schemes}


def parse_recipe(text: str | None) -> Recipe:
    """`int8`, or per component: `attention=int4-block32,feedforward=int4-block128,default=int8`.

    Components not named, `default` included, take the default recipe (int8)."""
    text = (text or DEFAULT_RECIPE).strip()
    if text == "auto":
        raise RecipeError(
            "`auto` is chosen per model against a target: `convert --quantize auto --max-ppl-increase 3%` "
            "(or --max-size 250MB), or edge_models.quantize.auto.choose_recipe"
        )
    schemes = all_schemes()
    parts: dict[str, str] = {}
    for item in text.split(","):
        component, sep, name = item.strip().rpartition("=")
        component = component.strip() if sep else "default"
        name = name.strip()
        known = component in COMPONENTS or component in PER_LAYER_PARTS
        if not known and not _LAYER_PART.fullmatch(component) and not _LEAD_ROWS.fullmatch(component):
            raise RecipeError(
                f"unknown component {component!r} in recipe {text!r}; components: {', '.join(COMPONENTS)}, "
                "layers.N.attention / layers.N.feedforward, rows.K (the first K rows of a tied embedding/LM head), "
                f"or for models with per-layer inputs {' / '.join(PER_LAYER_PARTS)}"
            )
        if name not in schemes:
            raise RecipeError(f"unknown quantization recipe {name!r}; valid: {', '.join(schemes)}")
        if component in parts:
            raise RecipeError(f"component {component!r} appears twice in recipe {text!r}")
        parts[component] = name
    # Components not named get the default recipe. (A float default beside quantized components keeps
    # float copies of weights that several signatures share: measured 1.5x the all-int8 file on tiny Gemma 3.)
    parts.setdefault("default", DEFAULT_RECIPE)
    ordered = tuple((c, parts[c]) for c in (*COMPONENTS, *PER_LAYER_PARTS) if c in parts)
    per_layer = sorted(
        (c for c in parts if c not in COMPONENTS and c not in PER_LAYER_PARTS), key=lambda c: (int(c.split(".")[1]), c)
    )
    if sum(bool(_LEAD_ROWS.fullmatch(c)) for c in parts) > 1:
        raise RecipeError(f"recipe {text!r} has more than one rows.K part")
    return Recipe(text, ordered + tuple((c, parts[c]) for c in per_layer))
