"""`edge-models profile`: a signature cut into parts, each timed on its own beside the whole signature.

What is checked here is the cut: every op in exactly one part, every weight read by the part that reads it, each
part runnable with the runtime's set-up. How the parts' times add up is a measurement of a real model (README);
on a tiny model one call's overhead outweighs its arithmetic, so no time ratio is asserted.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.tflite.parts import CACHE, EMBEDDING, HEAD, block_part, op_parts, write_parts_file
from edge_models.tflite.reading import flat_model, mapped
from edge_models.tflite.summary import operator_name
from edge_models.tools import overlays
from edge_models.tools.profile import format_profile, profile_file

pytestmark = pytest.mark.slow  # converts a model

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    model = random_model(registry().get("qwen3").tiny_config, seed=3)
    path = convert(model, tmp_path_factory.mktemp("profile") / "m.tflite", SETTINGS, "int8", progress=None).path
    return path, model.config


def _ops(data, subgraph: int) -> list[str]:
    model = flat_model(data)
    graph = model.Subgraphs(subgraph)
    return [operator_name(model, graph.Operators(o)) for o in range(graph.OperatorsLength())]


def test_the_parts_file_holds_every_op_once(converted, tmp_path):
    path, config = converted
    layers = config.num_layers
    made = write_parts_file(path, tmp_path / "parts.tflite", "decode")
    assert [p.part for p in made] == [EMBEDDING, *(block_part(i) for i in range(layers)), CACHE, HEAD, "other"][
        : len(made)
    ]
    with mapped(path) as data:
        whole = _ops(data, 1)
        parts = op_parts(flat_model(data), 1)
    with mapped(tmp_path / "parts.tflite") as data:
        cut = [_ops(data, k) for k in range(len(made))]
    assert sum(len(ops) for ops in cut) == len(whole)
    by_part = {p.part: Counter(ops) for p, ops in zip(made, cut)}
    for part, counts in by_part.items():
        assert counts == Counter(op for op, p in zip(whole, parts) if p == part)
    assert by_part[CACHE] == Counter({"DYNAMIC_UPDATE_SLICE": 2 * layers})
    # a KV cache write is bound in place, as the runtime binds the cache
    cache = next(p for p in made if p.part == CACHE)
    assert len(cache.in_place) == 2 * layers


def test_profile_times_each_part_and_counts_its_weights(converted, run):
    path, config = converted
    layers = config.num_layers
    found = profile_file(path, ["decode", "prefill_8"], threads=1, rounds=3, bandwidth_gb_s=10.0)
    decode, prefill = found.signatures
    assert [p.part for p in decode.parts][: layers + 1] == [EMBEDDING, *(block_part(i) for i in range(layers))]
    assert HEAD in [p.part for p in decode.parts] and HEAD not in [p.part for p in prefill.parts]  # no logits
    assert all(p.seconds > 0 and p.median_seconds >= p.seconds for p in decode.parts)
    # every weight is read by the one part whose ops read it: the parts' bytes add up to the whole's, but for small
    # constants several parts share (scalars, a norm's epsilon), counted in each
    assert 0 <= sum(p.weight_bytes for p in decode.parts) - decode.whole_weight_bytes < 1024
    head = next(p for p in decode.parts if p.part == HEAD)
    assert 0 <= head.weight_bytes - config.vocab_size * config.hidden_size < 1024  # the int8 vocabulary matrix
    assert decode.dominant.seconds == max(p.seconds for p in decode.parts)
    text = format_profile(found)
    assert "whole decode" in text and "dominates" in text

    result = run("profile", path, "--signature", "decode", "--rounds", "2", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    [only] = report["signatures"]
    assert only["signature"] == "decode" and only["dominant"] in {p["part"] for p in only["parts"]}
    with mapped(path) as data:
        overlay = overlays.profile_overlay(data, report)
        parts = op_parts(flat_model(data), 1)
    times = {p["part"]: round(p["ms"], 4) for p in only["parts"]}
    assert {int(k): v["value"] for k, v in overlay["decode"]["results"].items()} == {
        o: times[p] for o, p in enumerate(parts)
    }
    assert run("profile", path, "--signature", "nope").exit_code != 0
