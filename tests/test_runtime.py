"""The desktop runtime: sampler, generation loop over a converted model, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.runtime import Generator, LiteRTModel, Sampler, SamplerConfig, SentencePieceTokenizer, TokenizerError
from edge_models.testing import train_sentencepiece
from edge_models.tflite_check import TFLiteCheckError

# --- sampler ------------------------------------------------------------------------------------

LOGITS = np.array([1.0, 3.0, 2.5, -1.0, 0.5])


def test_greedy_and_its_equivalents():
    assert Sampler(SamplerConfig())(LOGITS) == 1
    assert Sampler(SamplerConfig(temperature=1.0, top_k=1))(LOGITS) == 1
    assert Sampler(SamplerConfig(temperature=1.0, top_p=1e-6))(LOGITS) == 1
    assert Sampler(SamplerConfig(temperature=1.0, min_p=0.99))(LOGITS) == 1


def test_seeded_sampling_is_reproducible_and_varies():
    def draw(seed):
        s = Sampler(SamplerConfig(temperature=1.5, seed=seed))
        return [s(LOGITS) for _ in range(50)]

    assert draw(1) == draw(1)
    assert len(set(draw(1))) > 1


def test_top_k_and_top_p_restrict_the_candidates():
    s = Sampler(SamplerConfig(temperature=5.0, top_k=2, seed=0))
    assert {s(LOGITS) for _ in range(200)} == {1, 2}
    # Mass of {1, 2} is below 0.9 at temperature 1, so a third token joins; never the least likely.
    s = Sampler(SamplerConfig(temperature=1.0, top_p=0.9, seed=0))
    assert {s(LOGITS) for _ in range(300)} <= {0, 1, 2}


def test_repetition_penalty_and_padded_vocab():
    assert Sampler(SamplerConfig(repetition_penalty=2.0))(LOGITS, history=[1]) == 2
    # Ids past the tokenizer's vocabulary (padded embedding rows) are never chosen.
    assert Sampler(SamplerConfig(), vocab_limit=1)(LOGITS) == 0


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_k": -1}, {"top_p": 0}, {"min_p": 1.0}, {"repetition_penalty": 0}]
)
def test_sampler_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SamplerConfig(**kwargs)


# --- generation over a converted model ----------------------------------------------------------

KV = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    tok_path = train_sentencepiece(root / "tokenizer.model", vocab_size=256)
    model = random_model(registry().get("llama").tiny_config, seed=2, std=0.08)
    path = convert(
        model, root / "tiny.tflite", ExportSettings(prefill_lengths=(4, 16), kv_cache_len=KV), "fp32", progress=None
    ).path
    return model, path, tok_path


def _torch_greedy(model, ids, n):
    cache = model.empty_cache(KV)
    out = []
    with torch.no_grad():
        logits, cache = model(torch.tensor([ids]), torch.arange(len(ids)), cache)
        token = int(logits[0, -1].argmax())
        for pos in range(len(ids), len(ids) + n):
            out.append(token)
            logits, cache = model(torch.tensor([[token]]), torch.tensor([pos]), cache)
            token = int(logits[0, 0].argmax())
    return out


def _generator(path, tok_path, stops=("</s>",), engine="compiled"):
    tok = SentencePieceTokenizer.from_file(tok_path)
    return Generator(LiteRTModel(path, engine=engine), tok, stops, start_token="<s>")


@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
@pytest.mark.parametrize("prompt_tokens", [1, 3, 10, 40])
@pytest.mark.slow
def test_greedy_generation_matches_torch(tiny, prompt_tokens, engine):
    """1 token: decode only; 3: one padded prefill_4; 10: prefill_16; 40: chunked over prefill_16."""
    model, path, tok_path = tiny
    gen = _generator(path, tok_path, stops=("<end_of_turn>",), engine=engine)
    ids = list(np.random.default_rng(prompt_tokens).integers(3, 256, prompt_tokens))
    expected = _torch_greedy(model, ids, 12)
    (stop_id,) = gen.stop_ids
    if stop_id in expected:
        expected = expected[: expected.index(stop_id)]
    assert list(gen.generate_ids(ids, 12)) == expected


@pytest.mark.slow
def test_generation_stops_at_a_stop_token(tiny):
    model, path, tok_path = tiny
    tok = SentencePieceTokenizer.from_file(tok_path)
    ids = [1, *tok.encode("kalo mine ruta")]
    expected = _torch_greedy(model, ids, 12)
    stop_piece = tok._sp.IdToPiece(expected[4])
    gen = _generator(path, tok_path, stops=(stop_piece,))
    got = list(gen.generate_ids(ids, 12))
    assert got == expected[: expected.index(expected[4])]
    assert gen.last_stats.stop_reason == "stop token"


@pytest.mark.slow
def test_stream_yields_the_decoded_text(tiny):
    _, path, tok_path = tiny
    gen = _generator(path, tok_path)
    pieces = list(gen.stream("kalo mine", max_tokens=10))
    ids = gen.encode("kalo mine")
    assert "".join(pieces) == gen.tokenizer.decode(list(_generator(path, tok_path).generate_ids(ids, 10)))
    assert gen.last_stats.generated_tokens == 10 and gen.last_stats.stop_reason == "max tokens"


@pytest.mark.slow
def test_generation_stops_when_the_cache_is_full(tiny):
    _, path, tok_path = tiny
    gen = _generator(path, tok_path)
    out = list(gen.generate_ids(list(range(3, 3 + KV - 4)), 100))
    # 60 prompt positions + 4 generated tokens fill the cache; the 5th is sampled but never fed back.
    assert len(out) == 5 and gen.last_stats.stop_reason == "KV cache full"


@pytest.mark.slow
def test_runtime_errors(tiny, tmp_path):
    _, path, tok_path = tiny
    gen = _generator(path, tok_path)
    with pytest.raises(ValueError, match="prompt is empty"):
        gen.encode("")
    with pytest.raises(ValueError, match="the prompt has 70 tokens; the KV cache holds 64"):
        list(gen.generate_ids(list(range(70)), 4))
    with pytest.raises(TokenizerError, match="stop token '<eot>' is not a single token"):
        _generator(path, tok_path, stops=("<eot>",))
    with pytest.raises(TokenizerError, match="no stop tokens"):
        _generator(path, tok_path, stops=())
    big = train_sentencepiece(tmp_path / "big.model", vocab_size=300)
    with pytest.raises(TokenizerError, match="tokenizer has 300 tokens but the model's logits have 256"):
        _generator(path, big)
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    with pytest.raises(TFLiteCheckError, match="bogus.tflite: not a loadable .tflite"):
        LiteRTModel(bogus)
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        SentencePieceTokenizer.from_file(bogus)
    no_decode = tmp_path / "no_decode.tflite"
    no_decode.write_bytes(path.read_bytes().replace(b"decode", b"decodX"))
    with pytest.raises(TFLiteCheckError, match="no 'decode' signature"):
        LiteRTModel(no_decode)


@pytest.mark.slow
def test_smaller_tokenizer_warns_and_masks_padded_ids(tiny, tmp_path, capsys):
    _, path, _ = tiny
    small = train_sentencepiece(tmp_path / "small.model", vocab_size=200)
    gen = _generator(path, small)
    assert "padded ids will never be sampled" in capsys.readouterr().err
    assert all(t < 200 for t in gen.generate_ids([1, 5, 9], 20))


def test_runtime_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, edge_models.runtime, edge_models.cli; "
        "bad = [m for m in ('torch', 'litert_torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
