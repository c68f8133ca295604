"""From an encoder-decoder name (or `auto`) and a checkpoint to a loaded Seq2Seq, and its check against
`transformers` on the same weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_models.config import Seq2SeqConfig
from edge_models.hf.config import read_config
from edge_models.kinds.encoder import checkpoint_directory, find_spec
from edge_models.plugins import ModelRegistry, seq2seq_registry
from edge_models.runtime.speculative import common_prefix
from edge_models.spec import Seq2SeqSpec


def find_seq2seq(name: str, checkpoint: str | Path | None = None, reg: ModelRegistry | None = None):
    """The encoder-decoder spec `name` (or `auto` with the checkpoint's architectures) stands for, or None."""
    return find_spec(reg or seq2seq_registry(), name, checkpoint)


def load_seq2seq_for_spec(spec: Seq2SeqSpec, checkpoint: str | Path, config: Seq2SeqConfig | None = None):
    from edge_models.layers.seq2seq import Seq2Seq
    from edge_models.loader import open_checkpoint
    from edge_models.loader.name_map import load_by_map

    directory = checkpoint_directory(checkpoint)
    if config is None:
        config = spec.config_from_hf(read_config(directory)) if (directory / "config.json").is_file() else spec.config
    source = open_checkpoint(checkpoint)
    return load_by_map(Seq2Seq(config), source, spec.tensor_names(config), spec.unused_tensors)


def random_seq2seq(config: Seq2SeqConfig, seed: int = 0, std: float = 0.05):
    from edge_models.kinds.decoder import randomized
    from edge_models.layers.seq2seq import Seq2Seq

    return randomized(lambda: Seq2Seq(config), seed, std)


def greedy(model, ids: list[int], new_tokens: int, cache_len: int = 64) -> tuple[list[int], list[np.ndarray]]:
    """Our greedy decoding through the caches: the tokens, and the logits of every step."""
    cfg = model.config
    with torch.no_grad():
        ids_t = torch.tensor([ids])
        cross = model.cross_cache(model.encode(ids_t, torch.ones_like(ids_t)))
        mask = torch.ones(1, len(ids))
        cache = model.empty_cache(cache_len)
        token, out, logits_seen = cfg.decoder_start_token_id, [], []
        for pos in range(new_tokens):
            logits, cache = model.decode(torch.tensor([[token]]), torch.tensor([pos]), cache, cross, mask)
            logits_seen.append(logits[0, -1].numpy())
            token = int(logits[0, -1].argmax())
            out.append(token)
    return out, logits_seen


@dataclass(frozen=True)
class Seq2SeqReport:
    model: str
    max_logit_diff: float
    tolerance: float
    tokens_equal: int
    tokens: int

    @property
    def passed(self) -> bool:
        return self.max_logit_diff <= self.tolerance and self.tokens_equal == self.tokens

    def table(self) -> str:
        return (
            f"{self.model}: logits vs transformers through encode and {self.tokens} decode steps: max |diff| "
            f"{self.max_logit_diff:.2e} (tolerance {self.tolerance:g}); greedy tokens equal {self.tokens_equal}/"
            f"{self.tokens}\n" + ("PASSED" if self.passed else "FAILED")
        )


def verify_seq2seq(
    spec: Seq2SeqSpec, checkpoint: str | Path, new_tokens: int = 32, atol: float = 1e-4
) -> Seq2SeqReport:
    """Greedy decoding of a fixed input: every step's logits and token against `transformers`' own decoding
    (teacher-forced on its tokens, so one early difference cannot hide the rest)."""
    import transformers

    model = load_seq2seq_for_spec(spec, checkpoint)
    cls = getattr(transformers, spec.reference_class)
    reference = cls.from_pretrained(
        str(checkpoint_directory(checkpoint)), dtype=torch.float32, local_files_only=True, attn_implementation="eager"
    ).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(2, model.config.vocab_size, 12).tolist() + [model.config.eos_token_id]
    ours, our_logits = greedy(model, ids, new_tokens)
    with torch.no_grad():
        generated = reference.generate(
            torch.tensor([ids]),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=False,  # transformers sizes its cache by the encoder when the stacks differ in depth
        )[0, 1:].tolist()
        start = [model.config.decoder_start_token_id]
        ref_logits = (
            reference(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([start + generated[:-1]]))
            .logits[0]
            .numpy()
        )
    _, teacher_forced = _forced(model, ids, start + generated[:-1])
    diff = float(np.abs(teacher_forced - ref_logits).max())
    equal = common_prefix(ours, generated)
    return Seq2SeqReport(spec.name, diff, atol, equal, new_tokens)


def _forced(model, ids: list[int], decoder_ids: list[int], cache_len: int = 64):
    """Our logits for `decoder_ids` fed one at a time through the cache."""
    with torch.no_grad():
        ids_t = torch.tensor([ids])
        cross = model.cross_cache(model.encode(ids_t, torch.ones_like(ids_t)))
        mask = torch.ones(1, len(ids))
        cache = model.empty_cache(cache_len)
        rows = []
        for pos, token in enumerate(decoder_ids):
            logits, cache = model.decode(torch.tensor([[token]]), torch.tensor([pos]), cache, cross, mask)
            rows.append(logits[0, -1].numpy())
    return decoder_ids, np.stack(rows)
