"""Encoder-decoders (T5): tiny random checkpoints saved by transformers, our PyTorch model and its .tflite against
`T5ForConditionalGeneration`, through encode and many decode steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edge_models.kinds.seq2seq import greedy, load_seq2seq_for_spec, verify_seq2seq
from edge_models.plugins import seq2seq_registry
from edge_models.testing import build_reference, save_reference, tiny_checkpoint

IDS = [5, 17, 42, 7, 99, 23, 150, 64, 8, 1]
STEPS = 32


@pytest.fixture(scope="module", params=["t5", "flan-t5-small"])
def tiny_t5(request, tmp_path_factory):
    """T5 v1.0 (ReLU, tied head scaled by d^-0.5, 2 encoder / 3 decoder layers) and FLAN-T5 (gated GELU, no scale)."""
    spec = seq2seq_registry().get(request.param)
    directory = tiny_checkpoint(spec, tmp_path_factory.mktemp(request.param) / "ck")
    return spec, directory, load_seq2seq_for_spec(spec, directory)


def test_relative_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    from edge_models.config import RelativePositionConfig
    from edge_models.layers.seq2seq import relative_buckets

    relative = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20)):
            want = T5Attention._relative_position_bucket(relative, bidirectional, buckets, distance)
            got = relative_buckets(relative, bidirectional, RelativePositionConfig(buckets, distance))
            assert torch.equal(got, want), (bidirectional, buckets)


@pytest.mark.slow
def test_pytorch_matches_transformers_through_encode_and_decode(tiny_t5):
    spec, directory, _ = tiny_t5
    report = verify_seq2seq(spec, directory, new_tokens=STEPS, atol=1e-4)
    assert report.passed, report.table()


@pytest.mark.slow
def test_tflite_matches_pytorch_refuses_long_input_and_int8_converts(tiny_t5, tmp_path):
    from edge_models.convert.seq2seq import convert_seq2seq
    from edge_models.runtime.seq2seq import Seq2SeqError, Seq2SeqModel, generate_ids

    spec, _, model = tiny_t5
    tokens, logits = greedy(model, IDS, STEPS)
    fp32 = convert_seq2seq(model, tmp_path / "fp32.tflite", (8, 16), 40, "fp32")
    assert fp32.signatures == ["encode_8", "encode_16", "decode"]
    lite = Seq2SeqModel(fp32.path)
    lite.encode(IDS)  # 10 tokens: encode_16, zero-padded
    token, worst = model.config.decoder_start_token_id, 0.0
    for pos in range(STEPS):
        worst = max(worst, float(np.abs(lite.decode(token, pos) - logits[pos]).max()))
        token = tokens[pos]
    assert worst <= 1e-4, worst
    start = model.config.decoder_start_token_id
    assert list(generate_ids(lite, IDS, STEPS, start, set())) == tokens
    with pytest.raises(Seq2SeqError, match="the input is 20 tokens long; this file encodes at most 16"):
        lite.encode(IDS * 2)
    int8 = convert_seq2seq(model, tmp_path / "int8.tflite", (16,), 40, "int8")
    assert int8.size_bytes < fp32.size_bytes
    assert len(list(generate_ids(Seq2SeqModel(int8.path), IDS, 8, start, set()))) == 8


def test_unsupported_feed_forward_is_named(tmp_path):
    from edge_models.hf.config import UnsupportedConfigError

    spec = seq2seq_registry().get("t5")
    with pytest.raises(UnsupportedConfigError, match="'feed_forward_proj' = 'gated-silu'"):
        spec.config_from_hf({**spec.tiny_hf_config, "feed_forward_proj": "gated-silu"})


def test_a_checkpoint_missing_a_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from edge_models.loader import CheckpointError

    spec = seq2seq_registry().get("t5")
    directory = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "ck")
    weights = load_file(directory / "model.safetensors")
    del weights["decoder.block.1.layer.1.EncDecAttention.k.weight"]
    save_file(weights, directory / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensor 'decoder.block.1.layer.1.EncDecAttention.k.weight'"):
        load_seq2seq_for_spec(spec, directory)


@pytest.mark.slow
def test_cli_verify_convert_and_generate(tmp_path):
    from edge_models.cli import _add_builtin_groups, cli
    from edge_models.runtime import load_tokenizer
    from edge_models.runtime.seq2seq import Seq2SeqModel, generate_ids
    from edge_models.testing import train_sentencepiece

    _add_builtin_groups()
    runner = CliRunner()
    result = runner.invoke(cli, ["verify", "t5", "--tiny", "--tokens", "8"])
    assert result.exit_code == 0 and "PASSED" in result.output, result.output
    out = tmp_path / "t5.tflite"
    args = [
        "convert",
        "t5",
        "--tiny",
        "-o",
        str(out),
        "--encode-lengths",
        "16",
        "--kv-cache",
        "24",
        "--quantize",
        "fp32",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and "encode_16, decode" in result.output, result.output
    # No tokenizer beside the file: a clear error; then a SentencePiece model (ids below the tiny vocabulary).
    result = runner.invoke(cli, ["generate", str(out), "--prompt", "ka lo mi"])
    assert result.exit_code != 0 and "give --tokenizer" in result.output
    spm = train_sentencepiece(tmp_path / "spiece.model")
    result = runner.invoke(cli, ["generate", str(out), "--prompt", "ka lo mi", "--max-tokens", "6"])
    assert result.exit_code == 0, result.output
    tok = load_tokenizer(spm)
    eos = tok.piece_to_id("</s>")
    expected = list(generate_ids(Seq2SeqModel(out), tok.encode("ka lo mi") + [eos], 6, 0, {eos}))
    assert result.output.startswith(tok.decode(expected))
