"""The two-stage LM head (`convert --shortlist K`): an int4 copy of the head ranks, the top K are scored exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, RecipeError, convert
from edge_models.convert.prune import PruneError, drop_signatures, signature_names
from edge_models.kinds.decoder import random_model
from edge_models.layers.decoder import Decoder
from edge_models.layers.shortlist import GROUP, default_k, top_ids
from edge_models.runtime import Generator, LiteRTModel, SamplerConfig
from edge_models.testing import train_sentencepiece
from edge_models.tools.bench import decode_weight_bytes

PROMPT = [3, 17, 42, 7, 9]


SETTINGS = ExportSettings((8,), 64, decode_windows=(32,))


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """(tiny Gemma 3, its int8 file with shortlist_8 signatures): a tied head with dynamic int8 activations, and a
    vocabulary of 16 groups, so the file's top-k runs in two rounds (`top_ids`)."""
    model = random_model(registry().get("gemma3-270m").tiny_config.replace(vocab_size=16 * GROUP), seed=3)
    path = tmp_path_factory.mktemp("shortlist") / "m.tflite"
    return model, convert(model, path, dataclasses.replace(SETTINGS, shortlist=8), "int8", progress=None).path


@pytest.mark.slow
def test_shortlist_scores_its_tokens_like_the_full_head(gemma):
    # (An untied float head is decoded end to end in the next test.) Scored on float activations instead of the
    # kernel's int8 ones, this model's scores were 0.011 off.
    model, path = gemma
    shortlisted, full = LiteRTModel(path), LiteRTModel(path)
    assert shortlisted.info.shortlists == {"shortlist_8": (8, None), "shortlist_8_32": (8, 32)}
    for m in (shortlisted, full):
        m.prefill(PROMPT[:-1], 0)
    token, held, steps = PROMPT[-1], 0, range(len(PROMPT) - 1, 40)
    # Past position 32 the full-window signature takes over from the windowed one.
    for pos in steps:
        logits = full.decode(token, pos)
        ids, scores = shortlisted.decode_shortlist(token, pos)
        assert len(set(ids.tolist())) == 8
        np.testing.assert_allclose(scores, logits[ids], atol=1e-5)
        best = int(logits.argmax())
        if best in ids:  # then greedy through the shortlist is greedy through the head
            held += 1
            assert int(ids[scores.argmax()]) == best
        token = best
    # The int4 copy only ranks; on a random tiny model its top 8 still hold the head's top token nearly always.
    assert held >= 0.9 * len(steps), held
    # What a step reads (`bench`'s memory roof): the int4 copy and its float16 block scales instead of the int8 head
    # (and the exact pass's few constants).
    cfg, flatbuffer = model.config, path.read_bytes()
    head = cfg.vocab_size * cfg.hidden_size
    expected = decode_weight_bytes(flatbuffer) - head + head // 2 + head // 16
    assert 0 <= decode_weight_bytes(flatbuffer, shortlist=True) - expected < 256


@pytest.mark.slow
def test_generator_decodes_greedy_text_through_the_shortlist(tmp_path):
    model = random_model(registry().get("llama").tiny_config, seed=5)
    tokenizer = train_sentencepiece(tmp_path / "tokenizer.model")
    texts = []
    for k in (16, 0):
        path = convert(model, tmp_path / f"m{k}.tflite", ExportSettings((8,), 64, shortlist=k), "fp32", progress=None)
        gen = Generator.open(path.path, tokenizer=tokenizer, model="llama")
        assert gen.model.shortlist_size == k
        texts.append(list(gen.generate_ids(gen.encode("ka lo mi ne"), 24, SamplerConfig(), speculate=False)))
    assert texts[0] == texts[1] and len(texts[0]) > 0


def test_shortlist_is_refused_where_it_cannot_be_built(tmp_path):
    model = random_model(registry().get("llama").tiny_config)
    with pytest.raises(RecipeError, match="between 1 and the vocabulary size"):
        convert(model, tmp_path / "m.tflite", ExportSettings((8,), 64, shortlist=10**6), "fp32", progress=None)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.slow
def test_pruning_the_shortlist_leaves_the_file_converted_without_it(gemma, tmp_path):
    model, shortlisted = gemma
    cfg = model.config
    paths = {8: shortlisted, 0: convert(model, tmp_path / "m0.tflite", SETTINGS, "int8", progress=None).path}
    pruned = tmp_path / "pruned.tflite"
    saved = drop_signatures(paths[8], pruned, ["shortlist_8", "shortlist_8_32"])
    assert signature_names(pruned) == signature_names(paths[0])
    # The int4 copy and its block scales go; what is left is the plain file but for the unused tensors' entries.
    assert saved >= cfg.vocab_size * cfg.hidden_size * (1 / 2 + 2 / 32)
    assert abs(pruned.stat().st_size - paths[0].stat().st_size) < 0.01 * paths[0].stat().st_size
    _decode_the_same(paths[8], pruned)
    # int4 blocks keep their scales (a tensor of their own, referenced from the weight's quantization).
    four = convert(
        model, tmp_path / "m4.tflite", dataclasses.replace(SETTINGS, shortlist=8), "int4-block32", progress=None
    )
    drop_signatures(four.path, tmp_path / "pruned4.tflite", ["shortlist_8", "shortlist_8_32"])
    _decode_the_same(four.path, tmp_path / "pruned4.tflite")
    with pytest.raises(PruneError, match="no signature shortlist_9"):
        drop_signatures(paths[8], tmp_path / "other.tflite", ["shortlist_9"])
    assert not (tmp_path / "other.tflite").exists()


def _decode_the_same(path, other) -> None:
    logits = []
    for m in (LiteRTModel(path), LiteRTModel(other)):
        m.prefill(PROMPT[:-1], 0)
        logits.append(m.decode(PROMPT[-1], len(PROMPT) - 1))
    np.testing.assert_array_equal(*logits)


def test_two_round_top_k_finds_the_top_k():
    torch.manual_seed(0)
    crowded = torch.randn(1, 1, 64 * GROUP)
    crowded[0, 0, 5 : 5 + 3 * GROUP] += 10  # the top 16 all in three neighbouring groups
    for scores in (torch.randn(1, 1, 64 * GROUP), crowded, torch.randn(1, 3, 64 * GROUP), torch.randn(1, 1, 1000)):
        expected = torch.topk(scores, 16, dim=-1)[1]
        assert (top_ids(scores, 16).sort(-1)[0] == expected.sort(-1)[0]).all()


def test_convert_adds_the_shortlist_where_the_head_dominates_decoding():
    def on_meta(config):
        with torch.device("meta"):
            return Decoder(config)

    gemma = registry().get("gemma3-270m")
    assert default_k(on_meta(gemma.config), head_bits=8) == 64  # head: 63 % of what decode reads
    assert default_k(on_meta(gemma.config), head_bits=4) == 0  # an int4 head is as cheap as its copy
    assert default_k(on_meta(registry().get("tinyllama-1.1b").config), head_bits=8) == 0  # head: 6 %
    assert default_k(on_meta(gemma.tiny_config), head_bits=8) == 0  # small vocabulary: tests stay lean
