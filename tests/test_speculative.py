"""Speculative decoding (issue 17): verify signatures, prompt lookup, exactness, cache state, sampling, back-off."""

from __future__ import annotations

import numpy as np
import pytest

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.runtime import Generator, LiteRTModel, SamplerConfig
from edge_models.runtime.sampler import Sampler
from edge_models.runtime.speculative import BackOff, prompt_lookup
from helpers.families import CONVERTED_CASES as CASES

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=48, verify_lengths=(4,))
PROMPT = [5, 9, 13, 5, 9, 17, 21, 5, 9]


class _Tokenizer:
    """Just enough of a tokenizer for the generation loop: ids in, ids out."""

    def __init__(self, vocab: int) -> None:
        self.vocab_size = vocab

    def piece_to_id(self, piece: str) -> int | None:
        return int(piece) if piece.isdigit() else None

    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def _generator(path, vocab: int) -> Generator:
    # A stop id the random model is unlikely to pick often: the loop must run long enough to speculate.
    return Generator(LiteRTModel(path), _Tokenizer(vocab), (str(vocab - 1),))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("speculative")

    def get(name: str):
        if name not in out:
            config = registry().get(name).tiny_config
            path = convert(random_model(config, seed=2), root / f"{name}.tflite", SETTINGS, "fp32", progress=None).path
            out[name] = (path, config.vocab_size)
        return out[name]

    return get


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    assert prompt_lookup([1, 2, 3, 4, 1, 2], 2) == [3, 4]
    # The longest suffix wins, then the most recent occurrence.
    assert prompt_lookup([7, 8, 1, 2, 9, 1, 2, 5, 1, 2], 3) == [5, 1, 2]
    assert prompt_lookup([1, 2, 3], 4) == []
    assert prompt_lookup([1, 2, 1], 0) == []


def _oracle(monkeypatch, truth: list[int], prompt_len: int, vocab: int):
    """Drafts from the plain run's own future tokens, every other round with its second token wrong, so both the
    accepting and the rejecting paths run many times."""
    import edge_models.runtime.generator as generator

    rounds = []

    def drafts(history, room, *args, **kwargs):
        ahead = truth[len(history) - prompt_len :][:room]
        rounds.append(len(ahead))
        if len(rounds) % 2 == 0 and len(ahead) > 1:
            ahead = [ahead[0], (ahead[1] + 1) % (vocab - 1), *ahead[2:]]
        return ahead

    monkeypatch.setattr(generator, "prompt_lookup", drafts)
    monkeypatch.setattr(BackOff, "allows", lambda self: True)
    return rounds


# Models with state beyond the KV cache (LFM2, Qwen3.5) are among them: their verify signatures output the state after
# each token and the runtime keeps the one after the last accepted token.
WITH_STATE = [n for n in CASES if {"conv", "linear"} & set(registry().get(n).tiny_config.layer_types or ())]


def _state(model: LiteRTModel) -> dict[str, np.ndarray]:
    """A copy of every state input the model holds now (`kv_cache_c_<i>...`)."""
    sizes = {n: int(np.prod(shape)) for n, shape in model.info.state_inputs.items()}
    return {n: np.array(model._kv_buffers[n].read(size, np.float32)) for n, size in sizes.items()}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.slow
def test_greedy_speculation_is_exactly_plain_decoding(name, converted, monkeypatch):
    path, vocab = converted(name)
    gen = _generator(path, vocab)
    plain = list(gen.generate_ids(PROMPT, 30, speculate=False))
    plain_cache, plain_state = list(gen.cached_ids), _state(gen.model)
    rounds = _oracle(monkeypatch, plain, len(PROMPT), vocab)
    spec = list(gen.generate_ids(PROMPT, 30, speculate=True))
    stats = gen.last_stats
    assert spec == plain
    assert rounds and stats.drafted_tokens > stats.accepted_tokens > 0
    assert gen.cached_ids == plain_cache
    # Layers with state end where plain decoding left them, rejected drafts undone.
    for name, state in _state(gen.model).items():
        np.testing.assert_allclose(state, plain_state[name], rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_cache_after_rejected_drafts_is_the_plain_cache(converted, monkeypatch):
    """After a run with rejected drafts, the next step's logits equal those after plain decoding: the slots the
    rejected drafts wrote are masked and overwritten, never read."""
    path, vocab = converted("llama")
    gen = _generator(path, vocab)
    plain = list(gen.generate_ids(PROMPT, 20, speculate=False))
    position = len(gen.cached_ids)
    after_plain = gen.model.decode(plain[-1], position)
    _oracle(monkeypatch, plain, len(PROMPT), vocab)
    assert list(gen.generate_ids(PROMPT, 20, speculate=True)) == plain
    assert len(gen.cached_ids) == position
    np.testing.assert_allclose(gen.model.decode(plain[-1], position), after_plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", WITH_STATE)
@pytest.mark.slow
def test_a_verify_that_rejects_every_draft_leaves_the_state_of_the_fed_token(name, converted):
    """Verify the fed token and three drafts, keep only the fed token: the state is the one decoding that token alone
    leaves (not the one after all four), and the next step's logits are plain decoding's."""
    path, _ = converted(name)
    plain, spec = LiteRTModel(path), LiteRTModel(path)
    for model in (plain, spec):
        model.prefill(PROMPT[:-1])
    pos, token = len(PROMPT) - 1, PROMPT[-1]
    plain.decode(token, pos)
    spec.verify([token, 3, 7, 11], pos)
    after_all = _state(spec)
    spec.keep_verified(1)
    expected, kept = _state(plain), _state(spec)
    assert expected.keys() == kept.keys() and expected
    for state in expected:
        np.testing.assert_allclose(kept[state], expected[state], rtol=0, atol=1e-5, err_msg=state)
    assert any(np.abs(after_all[s] - expected[s]).max() > 1e-3 for s in expected), "the drafts never reached the state"
    np.testing.assert_allclose(spec.decode(5, pos + 1), plain.decode(5, pos + 1), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "config",
    [SamplerConfig(temperature=0.8, seed=1), SamplerConfig(temperature=1.2, top_k=5, top_p=0.9, seed=2)],
    ids=["temperature", "top-k-top-p"],
)
@pytest.mark.slow
def test_speculative_sampling_keeps_the_distribution(config):
    logits = np.random.default_rng(0).normal(size=12) * 2
    sampler = Sampler(config)
    expected = sampler.distribution(logits)
    for draft in (int(np.argmax(expected)), int(np.argsort(expected)[-3]), int(np.argmin(expected))):
        counts = np.bincount([sampler.check_draft(logits, None, draft) for _ in range(20000)], minlength=12)
        # 20,000 draws: a standard error below 0.0036 per probability.
        assert np.abs(counts / counts.sum() - expected).max() < 0.015, (draft, counts / counts.sum(), expected)


@pytest.mark.slow
def test_sampling_with_speculation_stays_in_the_sampled_support(converted, monkeypatch):
    path, vocab = converted("llama")
    gen = _generator(path, vocab)
    config = SamplerConfig(temperature=0.7, top_k=3, seed=5)
    plain = list(gen.generate_ids(PROMPT, 16, sampler=config, speculate=False))
    _oracle(monkeypatch, plain, len(PROMPT), vocab)
    assert len(list(gen.generate_ids(PROMPT, 16, sampler=config, speculate=True))) == len(plain)


def test_back_off_pauses_drafting_that_does_not_pay():
    b = BackOff(cost_ratio=1.5, window=2)
    for _ in range(2):
        assert b.allows()
        b.record(1)
    paused = [b.allows() for _ in range(10)]
    assert paused[:8] == [False] * 8 and paused[8:] == [True, True]
    for _ in range(2):
        b.record(1)
    assert b.cooldown == 32 and b.paused == 16
    b.paused = 0
    for _ in range(2):
        b.record(4)
    assert b.cooldown == 8 and b.allows()


@pytest.mark.slow
def test_files_without_verify_signatures_decode_plainly(tmp_path):
    config = registry().get("llama").tiny_config
    path = convert(random_model(config), tmp_path / "m.tflite", ExportSettings((8,), 48), "fp32", progress=None).path
    gen = _generator(path, config.vocab_size)
    assert gen.model.verify_capacity(0) == 0
    list(gen.generate_ids(PROMPT, 8))
    assert gen.last_stats.drafted_tokens == 0


@pytest.mark.slow
def test_draft_model_speculation_is_exact(converted, tmp_path):
    """A draft model that agrees with the target (the same file) has every draft accepted; one that does not (other
    random weights) has them rejected; greedy output is the plain output either way, and the target's cache too."""
    path, vocab = converted("llama")
    other = convert(
        random_model(registry().get("llama").tiny_config, seed=7),
        tmp_path / "other.tflite",
        SETTINGS,
        "fp32",
        progress=None,
    ).path
    gen = _generator(path, vocab)
    plain = list(gen.generate_ids(PROMPT, 24, speculate=False))
    plain_cache = list(gen.cached_ids)
    accepted = {}
    for name, draft in (("same", path), ("other", other)):
        gen.attach_draft(draft)
        assert list(gen.generate_ids(PROMPT, 24)) == plain, name
        assert gen.cached_ids == plain_cache, name
        accepted[name] = (gen.last_stats.accepted_tokens, gen.last_stats.drafted_tokens)
    assert accepted["same"][0] == accepted["same"][1] > 0
    assert accepted["other"][0] < accepted["other"][1]


@pytest.mark.slow
def test_draft_model_must_share_the_vocabulary(converted, tmp_path):
    path, vocab = converted("llama")
    config = registry().get("llama").tiny_config.replace(vocab_size=300)
    other = convert(random_model(config), tmp_path / "v.tflite", SETTINGS, "fp32", progress=None).path
    with pytest.raises(ValueError, match="must share the tokenizer"):
        _generator(path, vocab).attach_draft(other)


@pytest.mark.slow
def test_bench_prints_plain_and_speculative_generation_side_by_side(converted, tmp_path):
    import json
    import shutil

    from click.testing import CliRunner

    from edge_models.cli import cli
    from edge_models.testing import train_sentencepiece

    path, _ = converted("llama")
    local = tmp_path / "m.tflite"
    shutil.copy(path, local)
    train_sentencepiece(tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    result = CliRunner().invoke(cli, ["bench", str(local), "--decode-tokens", "24", "--prompt", "ka lo mi ka lo mi ka"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("| ")]
    assert any("greedy generation" in line for line in lines), result.output
    plain = next(line for line in lines if line.startswith("| plain decoding"))
    speculative = next(line for line in lines if line.startswith("| speculative (prompt lookup)"))
    # fp32: speculation gives the plain tokens exactly.
    assert plain.rstrip(" |").endswith("yes") and speculative.rstrip(" |").endswith("yes"), result.output
    # The memory roof: decode reads every 2-D weight (fp32 here) once per token, but of the (untied) embedding only
    # the rows it looks up.
    from edge_models import registry
    from edge_models.kinds.decoder import random_model
    from edge_models.tflite.reading import decode_weight_bytes

    model = random_model(registry().get("llama").tiny_config)
    assert not model.config.tie_embeddings
    sizes = {n: 4 * p.numel() for n, p in model.named_parameters() if p.dim() == 2}
    embedding = sizes.pop("embed_tokens.weight")
    assert sum(sizes.values()) <= decode_weight_bytes(local.read_bytes()) <= local.stat().st_size - embedding
    assert "MB of weights per token" in result.output and "% of the" in result.output
