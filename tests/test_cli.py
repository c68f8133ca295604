"""The `edge-models` command as a user runs it: clean errors, and the convert -> generate path."""

from __future__ import annotations

import json

import pytest
import torch

from edge_models.testing import tiny_checkpoint, train_sentencepiece
from helpers import fails_cleanly


def test_recipes_lists_every_name(run):
    out = run("recipes").output
    for name in ("fp32", "fp16", "int8-weight", "int8", "int4-block32", "int4-block128"):
        assert name in out


def test_bad_inputs_give_one_line_errors(run, tmp_path):
    fails_cleanly(run("convert", "gemma9", "--tiny"), "unknown model 'gemma9'", "gemma3-270m")
    fails_cleanly(
        run("convert", "llama", "--tiny", "--quantize", "int3"), "unknown quantization recipe 'int3'", "int4-block32"
    )
    fails_cleanly(run("convert", "llama", "--tiny", "--quantize", "mlp=int8"), "unknown component 'mlp'")
    fails_cleanly(run("convert", "llama"), "--checkpoint")
    fails_cleanly(
        run("convert", "llama", "--tiny", "--prefill", "128", "--kv-cache", "64"),
        "prefill lengths [128] exceed the KV cache length 64",
    )
    fails_cleanly(run("verify", "llama"), "exactly one of --checkpoint PATH and --tiny")
    # Checked before the conversion, so nothing is written.
    fails_cleanly(
        run("convert", "llama", "--tiny", "-o", tmp_path / "m.tflite", "--bundle", tmp_path / "m.task"),
        "--bundle needs the model's tokenizer",
    )
    assert not list(tmp_path.iterdir())


def test_unsupported_config_field_is_named(run, tmp_path):
    from edge_models import registry

    ckpt = tiny_checkpoint(registry().get("llama"), tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    (ckpt / "config.json").write_text(json.dumps(config))
    fails_cleanly(run("convert", "auto", "--checkpoint", ckpt), "rope scaling type 'yarn' is not supported")


@pytest.mark.slow
def test_convert_auto_then_generate(run, tmp_path, monkeypatch):
    from edge_models import registry
    from edge_models.convert.prune import signature_names
    from edge_models.layers import shortlist

    ckpt = tiny_checkpoint(registry().get("llama"), tmp_path / "ckpt")
    train_sentencepiece(ckpt / "tokenizer.model", vocab_size=256)
    out = tmp_path / "m.tflite"
    # As if this tiny head were a big vocabulary's: the default two-stage head is added, and said so.
    monkeypatch.setattr(shortlist, "default_k", lambda model, head_bits: 8 if head_bits == 8 else 0)
    result = run("convert", "auto", "--checkpoint", ckpt, "-o", out, "--prefill", "8", "--kv-cache", "64")
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(tmp_path.glob("*.partial"))
    assert "adding shortlist_8 signatures" in result.output
    assert "shortlist_8" in signature_names(out)
    gen = run(
        "generate",
        out,
        "--tokenizer",
        ckpt / "tokenizer.model",
        "--model",
        "llama",
        "--prompt",
        "kalo mine",
        "--max-tokens",
        "6",
        "--temperature",
        "0.8",
        "--seed",
        "3",
    )
    assert gen.exit_code == 0, gen.output
    assert "prompt tokens" in gen.output  # the stats line (stderr is mixed into output here)
    # `debug` on the file as the CLI wrote it (prefill signatures without logits): every block and the logits.
    debug = run("debug", out, "--checkpoint", ckpt, "--prompt", "kalo mine")
    assert debug.exit_code == 0, debug.output
    assert all(f"block {i}" in debug.output for i in range(registry().get("llama").tiny_config.num_layers))
    assert "logits" in debug.output


@pytest.mark.slow
def test_phi2_tokenizer_json_stops_at_endoftext(run, tmp_path):
    """Phi-2's default stop token, read through an HF byte-level BPE tokenizer.json, ends generation."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model
    from edge_models.testing import corpus

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")

    spec = registry().get("phi-2")
    model = random_model(spec.tiny_config.replace(vocab_size=320))
    with torch.no_grad():
        model.lm_head.bias[eos] = 100.0  # the model "wants" to stop right away
    path = convert(
        model, tmp_path / "phi.tflite", ExportSettings(prefill_lengths=(8,), kv_cache_len=64), "fp32", progress=None
    ).path
    result = run(
        "generate",
        path,
        "--tokenizer",
        tmp_path / "tokenizer.json",
        "--model",
        "phi-2",
        "--prompt",
        "kalo mine",
        "--max-tokens",
        "20",
    )
    assert result.exit_code == 0, result.output
    assert "0 generated (stop token)" in result.output
    # The padded logits (300 tokens, 320 logits) are reported, not silently accepted.
    assert "padded ids will never be sampled" in result.output
