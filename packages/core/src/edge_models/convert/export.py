"""Export settings, signature wrappers and sample inputs for litert-torch."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from edge_models.layers import Decoder
from edge_models.layers.shortlist import SHORTLIST_PREFIX
from edge_models.tflite.checks import STATE_STEPS_PREFIX

if TYPE_CHECKING:
    from edge_models.quantize.recipes import Recipe

# Extra signatures that read only the first cache slots, named so that LiteRT-LM, which looks for prefill*/decode,
# ignores them: `step_<W>` decodes one token, `fill_<N>_<W>` prefills N tokens.
STEP_PREFIX = "step_"
FILL_PREFIX = "fill_"
# `verify_<K>` (and `verify_<K>_<W>`, reading the first W slots) score K tokens at once with logits for each: the
# target model's side of speculative decoding.
VERIFY_PREFIX = "verify_"


@dataclass(frozen=True)
class SignatureSpec:
    name: str
    tokens: int
    logits: bool
    attend: int | None  # cache slots read; None: all
    shortlist: int = 0  # K: outputs the top K tokens' ids and exact logits (layers.shortlist) instead of logits


@dataclass(frozen=True)
class ExportSettings:
    prefill_lengths: tuple[int, ...] = (32, 128)
    kv_cache_len: int = 1024
    # LiteRT-LM prefills all prompt tokens but the last and decodes that one, so
    # prefill logits are never read; leaving them out saves a vocab-sized matmul.
    prefill_logits: bool = False
    # Extra decode signatures `step_<W>` that read only the first W cache slots, for positions below W: reading
    # the whole 1024-slot cache made decode 1.5x slower on the 135M shape (benchmarks/results/speed_135m.md).
    # Windows not below kv_cache_len are left out. Our runtime uses them; LiteRT-LM keeps using `decode`.
    # None: where they pay (`windows_pay`), settled by the pipeline before converting.
    decode_windows: tuple[int, ...] | None = (256,)
    # The same for prefill: `fill_<N>_<W>` for every prefill length N <= W, used while the chunk ends below W.
    # A prompt's first chunk otherwise attends over the whole (empty) cache.
    prefill_windows: tuple[int, ...] | None = (256,)
    # Speculative decoding's verify signatures (see VERIFY_PREFIX); none by default in the Python API, the CLI's
    # `convert` adds verify_8.
    verify_lengths: tuple[int, ...] = ()
    # K > 0: `shortlist_<K>` (and `shortlist_<K>_<W>` per decode window) decode one token through the two-stage
    # head (layers.shortlist): the top K tokens' ids and exact logits, for our runtime's greedy and top-k decoding.
    shortlist: int = 0
    # Mark each RMSNorm as a `odml.rms_norm` composite (litert_torch.hlfb): a boundary a GPU or NPU delegate can map
    # to one fused kernel; the CPU runs the decomposition, the same ops as without it. Off: files stay as they were.
    composites: bool = False

    def __post_init__(self) -> None:
        if not self.prefill_lengths:
            raise ValueError("at least one prefill length is needed")
        if any(n < 1 for n in self.prefill_lengths):
            raise ValueError(f"prefill lengths must be positive, got {list(self.prefill_lengths)}")
        too_long = [n for n in self.prefill_lengths if n > self.kv_cache_len]
        if too_long:
            raise ValueError(f"prefill lengths {too_long} exceed the KV cache length {self.kv_cache_len}")

    def with_windows_where_they_pay(self, model: Decoder, recipe: Recipe) -> ExportSettings:
        """These settings with windows left unsettled (None) settled: DEFAULT_WINDOW where `windows_pay`, else none."""
        pay = (DEFAULT_WINDOW,) if windows_pay(model, self.kv_cache_len, recipe) else ()
        return replace(
            self,
            decode_windows=pay if self.decode_windows is None else self.decode_windows,
            prefill_windows=pay if self.prefill_windows is None else self.prefill_windows,
        )

    def signatures(self) -> list[SignatureSpec]:
        if self.decode_windows is None or self.prefill_windows is None:
            raise ValueError("windows left to be settled: call with_windows_where_they_pay first")
        prefills = [
            SignatureSpec(f"prefill_{n}", n, self.prefill_logits, None) for n in sorted(set(self.prefill_lengths))
        ]
        windows = sorted({w for w in self.decode_windows if 0 < w < self.kv_cache_len})
        steps = [SignatureSpec(f"{STEP_PREFIX}{w}", 1, True, w) for w in windows]
        fills = [
            SignatureSpec(f"{FILL_PREFIX}{p.tokens}_{w}", p.tokens, p.logits, w)
            for w in sorted({w for w in self.prefill_windows if 0 < w < self.kv_cache_len})
            for p in prefills
            if p.tokens <= w
        ]
        verify_windows = sorted({w for w in (*self.decode_windows, *self.prefill_windows) if 0 < w < self.kv_cache_len})
        verifies = [
            SignatureSpec(f"{VERIFY_PREFIX}{k}{f'_{w}' if w else ''}", k, True, w)
            for k in sorted(set(self.verify_lengths))
            for w in (None, *verify_windows)
            if 1 < k <= (w or self.kv_cache_len)
        ]
        shortlists = [
            SignatureSpec(f"{SHORTLIST_PREFIX}{self.shortlist}{f'_{w}' if w else ''}", 1, True, w, self.shortlist)
            for w in ((None, *windows) if self.shortlist else ())
        ]
        return [*prefills, SignatureSpec("decode", 1, True, None), *steps, *fills, *verifies, *shortlists]

    def signature_names(self) -> list[str]:
        return [s.name for s in self.signatures()]


DEFAULT_WINDOW = 256
# A window saves reading the cache slots past W, so it pays where the whole cache is a real share of the bytes a
# decode step reads; every signature also costs load time (XNNPACK prepares int4 block scales once per signature:
# at 1.5B int4 the 8 signatures of the old default took 4.15 s of a warm load). Measured decode gains of step_256:
# 1.6x on the 135M shape (cache 35 % of its int8 weights); none on qwen2.5-1.5b int8 / int4 (4 % / 8 %).
WINDOW_SHARE = 0.10


def windows_pay(model: Decoder, kv_cache_len: int, recipe: Recipe) -> bool:
    """Whether the fp32 cache of `kv_cache_len` slots is at least WINDOW_SHARE of the weight bytes a decode step
    reads when stored as `recipe` says (embedding tables are looked up a row at a time; a tied one is read whole as
    the head)."""
    cache = sum(t.numel() * t.element_size() for t in model.empty_cache(kv_cache_len).values())
    tables = {name for name, m in model.named_modules() if isinstance(m, nn.Embedding)}
    read = 0.0
    for name, weight in model.named_parameters():
        owner = name.rpartition(".")[0]
        if owner in tables:
            if owner != "embed_tokens" or not model.config.tie_embeddings:
                continue
            owner = "lm_head"
        bits = recipe.scheme_for(owner).bits if weight.dim() > 1 else 32
        read += weight.numel() * bits / 8
    return cache >= WINDOW_SHARE * read


class Signature(nn.Module):
    """One exported entry point: named inputs in, named outputs out."""

    def __init__(
        self,
        model: Decoder,
        with_logits: bool,
        attend: int | None = None,
        shortlist: bool = False,
        state_steps: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.state_steps = state_steps
        self.with_logits = with_logits
        self.attend = attend
        self.shortlist = shortlist

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor, kv_cache: dict[str, torch.Tensor]):
        if self.shortlist:
            x, cache = self.model.hidden_states(tokens, input_pos, kv_cache, attend=self.attend)
            ids, logits = self.model.shortlist(self.model, x)
            return {**{f"kv_cache_{name}": tensor for name, tensor in cache.items()}, "ids": ids, "logits": logits}
        steps: dict[str, torch.Tensor] | None = {} if self.state_steps else None
        logits, cache = self.model(tokens, input_pos, kv_cache, attend=self.attend, state_steps=steps)
        out = {f"kv_cache_{name}": tensor for name, tensor in cache.items()}
        out.update({f"{STATE_STEPS_PREFIX}{name}": tensor for name, tensor in (steps or {}).items()})
        if self.with_logits:
            out["logits"] = logits
        return out


def sample_inputs(model: Decoder, length: int, kv_len: int) -> dict:
    """Sample kwargs; flattened by litert-torch into tokens, input_pos, kv_cache_k_0, ..."""
    return {
        "tokens": torch.zeros(1, length, dtype=torch.int32),
        "input_pos": torch.arange(length, dtype=torch.int32),
        "kv_cache": model.empty_cache(kv_len),
    }


_lowering_registered = False


def register_lowerings() -> None:
    """Teach litert-torch to lower our cache write to StableHLO dynamic_update_slice."""
    global _lowering_registered
    if _lowering_registered:
        return
    from litert_converter.mlir import ir
    from litert_converter.mlir.dialects import stablehlo
    from litert_torch.backend import lowerings

    @lowerings.lower(torch.ops.edge_models.dynamic_update_slice)
    def _lower(lctx, cache, update, start, dim):
        i32 = ir.IntegerType.get_signless(32)
        scalar = ir.RankedTensorType.get([], i32)
        zero = stablehlo.constant(ir.DenseElementsAttr.get_splat(scalar, ir.IntegerAttr.get(i32, 0)))
        first = stablehlo.reshape(scalar, start)
        rank = ir.RankedTensorType(cache.type).rank
        return stablehlo.dynamic_update_slice(cache, update, [first if i == dim else zero for i in range(rank)])

    _lowering_registered = True


def lower_signatures(
    model: Decoder,
    settings: ExportSettings,
    wrap=lambda signature: signature,
    extra_inputs: dict | None = None,
    lightweight: bool = True,
    only: Collection[str] | None = None,
) -> bytes:
    """Every signature of `settings` (or those named in `only`) through litert-torch into one flatbuffer; `wrap`
    and `extra_inputs` let a caller feed more inputs (the low-memory path passes the weights this way)."""
    import litert_torch

    register_lowerings()
    converter = None
    for spec in settings.signatures():
        if only is not None and spec.name not in only:
            continue
        steps = spec.name.startswith(VERIFY_PREFIX) and getattr(model, "has_state", False)
        module = wrap(Signature(model, spec.logits, spec.attend, bool(spec.shortlist), steps).eval()).eval()
        kwargs = {**sample_inputs(model, spec.tokens, settings.kv_cache_len), **(extra_inputs or {})}
        converter = (converter or litert_torch).signature(spec.name, module, sample_kwargs=kwargs)
    with torch.no_grad(), decomposed_once():
        return converter.convert(lightweight_conversion=lightweight).model_content()


@contextlib.contextmanager
def decomposed_once() -> Iterator[None]:
    """Skip litert-torch's first decomposition pass.

    litert-torch re-traces every exported program twice: right after `torch.export` with its pre-convert table,
    and again before lowering with the pre-lower table, which contains the first and always re-traces. On our
    graphs the first pass changes nothing: the flatbuffers are byte-identical with and without it for every
    registered family (measured; tests/test_low_memory.py keeps checking one), and each pass costs as much as the
    export itself (~25-30 % of a conversion). Left alone if litert-torch's internals are not as expected."""
    try:
        from litert_torch._convert import core

        original = core.export_torch_signature
        known = "run_decompositions" in inspect.signature(original).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        known = False
    if not known:
        yield
        return
    core.export_torch_signature = functools.partial(original, run_decompositions=False)
    try:
        yield
    finally:
        core.export_torch_signature = original
