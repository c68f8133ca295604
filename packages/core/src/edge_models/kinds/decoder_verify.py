"""Compare our re-authored model with transformers' own implementation on the same weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from edge_models.layers import Decoder


@dataclass(frozen=True)
class Comparison:
    label: str
    prompt_tokens: int
    max_abs_diff: float
    max_rel_diff: float  # max abs diff / max |reference logit|
    greedy_match: int  # leading greedy tokens that agree
    greedy_total: int  # tokens compared: those both sides produced
    tolerance: float
    # transformers' generate() stops at the checkpoint's end-of-sequence token whatever its generation config says:
    # the greedy comparison then ends there too (the logits are still compared over every token we decoded).
    reference_stopped: bool = False

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.greedy_match == self.greedy_total


@dataclass
class VerifyReport:
    model: str
    rows: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    def table(self) -> str:
        lines = [
            f"verify {self.model} against transformers",
            f"{'prompt':<24} {'tokens':>6} {'max|Δ|':>10} {'rel':>9} {'tol':>9} {'greedy':>9}  result",
        ]
        for r in self.rows:
            lines.append(
                f"{r.label[:24]:<24} {r.prompt_tokens:>6} {r.max_abs_diff:>10.2e} {r.max_rel_diff:>9.1e} "
                f"{r.tolerance:>9.1e} {r.greedy_match:>4}/{r.greedy_total:<4}  {'ok' if r.passed else 'FAIL'}"
                + ("  (the reference stopped at its end-of-sequence token)" if r.reference_stopped else "")
            )
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def greedy_with_cache(model: Decoder, ids: list[int], new_tokens: int, kv_len: int | None = None):
    """Prefill `ids`, then greedy-decode; returns (prefill logits [T,V], decode logits [N,V], tokens)."""
    kv_len = kv_len or len(ids) + new_tokens + 1
    cache = model.empty_cache(kv_len)
    with torch.no_grad():
        logits, cache = model(torch.tensor([ids]), torch.arange(len(ids)), cache)
        prefill = logits[0]
        token = int(prefill[-1].argmax())
        tokens, steps = [], []
        for pos in range(len(ids), len(ids) + new_tokens):
            tokens.append(token)
            step, cache = model(torch.tensor([[token]]), torch.tensor([pos]), cache)
            steps.append(step[0, 0])
            token = int(step[0, 0].argmax())
    return prefill, torch.stack(steps) if steps else prefill[:0], tokens


def reference_greedy(reference, ids: list[int], new_tokens: int) -> list[int]:
    import copy

    config = copy.deepcopy(reference.generation_config)
    # Meant to decode a fixed number of tokens, but generate() still stops at the checkpoint's own EOS token
    # (it fills unset fields from the model's defaults): `compare` compares what both sides produced.
    config.eos_token_id = None
    config.do_sample = False
    config.max_new_tokens = new_tokens
    config.min_new_tokens = None
    config.pad_token_id = 0
    inputs = torch.tensor([ids])
    with torch.no_grad():
        # An explicit mask: generate() would otherwise mask prompt tokens equal to the pad id.
        out = reference.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    return out[0, len(ids) :].tolist()


def compare(
    model: Decoder, reference, ids: list[int], new_tokens: int, label: str = "", atol: float | None = None
) -> Comparison:
    """Logits on the prompt and on every greedy decode step, and greedy tokens, vs `reference`."""
    prefill, steps, ours = greedy_with_cache(model, ids, new_tokens)
    ref_tokens = reference_greedy(reference, ids, new_tokens)
    # Reference logits over prompt + our continuation line up with our prefill and decode steps.
    seq = ids + ours
    with torch.no_grad():
        ref_logits = reference(torch.tensor([seq])).logits[0].float()
    ours_all = torch.cat([prefill, steps[:-1]]) if new_tokens else prefill
    ref_all = ref_logits[: len(seq) - 1] if new_tokens else ref_logits
    diff = float((ours_all - ref_all).abs().max())
    scale = float(ref_all.abs().max())
    tolerance = atol if atol is not None else 1e-4 * max(1.0, scale)
    match = 0
    for a, b in zip(ours, ref_tokens):
        if a != b:
            break
        match += 1
    compared = min(new_tokens, len(ref_tokens))
    return Comparison(
        label or f"{len(ids)} ids",
        len(ids),
        diff,
        diff / max(scale, 1e-12),
        match,
        compared,
        tolerance,
        reference_stopped=compared < new_tokens,
    )


def load_reference(spec, checkpoint: str | Path):
    import transformers

    from edge_models.hf.hub_cache import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    kwargs = dict(dtype=torch.float32, local_files_only=True, attn_implementation="eager")
    if path.suffix == ".gguf" and not (path.parent / "config.json").exists():
        return _gguf_reference(path, kwargs)
    cls = getattr(transformers, spec.reference_class)
    if path.suffix == ".gguf":
        return cls.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs).eval()
    directory = path if path.is_dir() else path.parent
    return _multimodal_class(directory, spec, transformers, cls).from_pretrained(str(directory), **kwargs).eval()


def _multimodal_class(directory: Path, spec, transformers, text_class):
    """A multimodal checkpoint's own class (its text decoder is what we load; `text_class` would not find its
    weights under their names), when the spec accepts it; else `text_class`."""
    from edge_models.hf.config import read_config

    hf = read_config(directory) if (directory / "config.json").exists() else {}
    own = (hf.get("architectures") or [None])[0]
    if "text_config" in hf and own in spec.architectures and hasattr(transformers, own):
        return getattr(transformers, own)
    return text_class


def _gguf_reference(path: Path, kwargs: dict):
    """transformers' model of what the GGUF holds (as llama.cpp runs it: a Mistral file is a Llama), on the weights
    as transformers reads them, with the hyper-parameters read as ours are: transformers' own GGUF config reader
    leaves out some that llama.cpp writes or hard-codes (Qwen 3's head size, attention biases, RoPE scaling factors,
    Gemma 2's query scale)."""
    import transformers

    from edge_models.loader.gguf_config import GGUF_ARCHITECTURES, hf_architectures, hf_config_from_gguf
    from edge_models.loader.gguf_source import GGUFSource

    gguf = GGUFSource(path)
    hf_architectures(gguf)  # an unknown architecture is named here
    hf = hf_config_from_gguf(gguf, GGUF_ARCHITECTURES[gguf.architecture][0])
    fields = {k: v for k, v in hf.items() if k not in ("architectures", "model_type")}
    fields.setdefault("pad_token_id", None)  # not the family's default id, which a small vocabulary may lack
    config = transformers.AutoConfig.for_model(hf["model_type"], **fields)
    cls = getattr(transformers, hf["architectures"][0])
    try:
        return cls.from_pretrained(str(path.parent), gguf_file=path.name, config=config, **kwargs).eval()
    except ValueError as e:
        if "is not supported" not in str(e):  # transformers' words for an architecture it has no GGUF mapping of
            raise
        raise ValueError(
            f"{path}: transformers {transformers.__version__} does not read GGUF architecture "
            f"{gguf.architecture!r}, so it cannot be the reference; verify the checkpoint the GGUF was made from"
        ) from None


def encode_prompts(spec, checkpoint: Path, prompts: list[str]) -> list[list[int]]:
    """Prompt ids as the reference would see them: transformers' own tokenizer where the checkpoint
    has one (GGUF metadata, tokenizer.json), else the SentencePiece model beside it plus the start token."""
    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if checkpoint.suffix == ".gguf" or (directory / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        extra = {"gguf_file": checkpoint.name} if checkpoint.suffix == ".gguf" else {}
        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **extra)
        return [tok(p)["input_ids"] for p in prompts]
    if (directory / "tokenizer.model").exists():
        from edge_models.runtime.tokenizer import SentencePieceTokenizer

        tok = SentencePieceTokenizer.from_file(directory / "tokenizer.model")
        start = tok.piece_to_id(spec.tokenizer.start_token) if spec.tokenizer.start_token else None
        return [([start] if start is not None else []) + tok.encode(p) for p in prompts]
    raise FileNotFoundError(f"prompts need a tokenizer: none found for {checkpoint} (tokenizer.json / tokenizer.model)")


def verify_checkpoint(
    model_name: str,
    checkpoint: str | Path,
    prompts: list[str] | None = None,
    new_tokens: int = 32,
    atol: float | None = None,
) -> VerifyReport:
    from edge_models.hf.hub_cache import resolve_checkpoint
    from edge_models.kinds.decoder import load_for_spec, resolve_spec

    checkpoint = resolve_checkpoint(checkpoint)
    spec = resolve_spec(model_name, checkpoint)
    ours = load_for_spec(spec, checkpoint)
    reference = load_reference(spec, checkpoint)
    report = VerifyReport(spec.name)
    if prompts:
        inputs = list(zip(prompts, encode_prompts(spec, checkpoint, prompts)))
    else:
        # Without a tokenizer, fixed pseudo-random ids still exercise every weight.
        gen = torch.Generator().manual_seed(0)
        vocab = ours.config.vocab_size
        inputs = [
            (f"random ids #{i}", torch.randint(0, vocab, (n,), generator=gen).tolist()) for i, n in enumerate((8, 24))
        ]
    from edge_models.io import console

    for i, (label, ids) in enumerate(inputs):
        report.rows.append(compare(ours, reference, ids, new_tokens, label, atol))
        console.stage(f"verified prompt {i + 1}/{len(inputs)}")
    return report
