"""Structured output (issue 30): the engine's token table, constrained generation over converted tiny models (a
SentencePiece model with byte pieces, a byte-level BPE tokenizer.json), speculation under a constraint, the CLI and
its errors. The committed cases are benchmarks/data/structured/cases.json (the Gemma 3 270M run is
benchmarks/bench_structured.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import random_model
from edge_models.runtime import (
    Constraint,
    ConstraintError,
    Generator,
    HFTokenizer,
    LiteRTModel,
    Sampler,
    SamplerConfig,
    SentencePieceTokenizer,
)
from edge_models.runtime.constraints import Guide, engine_tokenizer, sentencepiece_token_bytes
from edge_models.testing import constraint_violations, corpus, train_sentencepiece
from helpers import fails_cleanly

CASES_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "structured"
CASES = json.loads((CASES_DIR / "cases.json").read_text())
# Text with the characters JSON, the regexes and the grammar need, so the tokenizers learn pieces for them.
JSON_LINES = [
    '{"name": "Ana", "age": 34, "languages": ["pt", "en"], "paid": true, "note": "say \\"hi\\""}',
    '{"order_id": 12, "items": [{"product": "coffee", "quantity": 2, "price": 3.5}], "email": "bob@example.com"}',
    "1999-07-20, 2024-12-31: yes, because it is. no, because (12 + 3) * 4 / 5 - 6",
]
KV = 2048


def _constraint(case: dict) -> Constraint:
    if "json_schema" in case:
        return Constraint.json_schema(CASES_DIR / case["json_schema"])
    if "regex" in case:
        return Constraint.regex(case["regex"])
    if "grammar" in case:
        return Constraint.lark(CASES_DIR / case["grammar"])
    return Constraint.any_json()


def _sentencepiece_with_bytes(path: Path) -> Path:
    """A Gemma-like SentencePiece model: BPE with byte-fallback pieces `<0xNN>` and `▁` for spaces."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()[:500] + JSON_LINES * 20),
        model_writer=buf,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    return path


def _byte_level_bpe(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus()[:500] + JSON_LINES * 20, trainer)
    tok.save(str(path))
    return path


def _tiny_model(root: Path, vocab: int, name: str) -> Path:
    model = random_model(registry().get("llama").tiny_config.replace(vocab_size=vocab), seed=3, std=0.08)
    settings = ExportSettings(prefill_lengths=(16,), kv_cache_len=KV, verify_lengths=(8,))
    return convert(model, root / f"{name}.tflite", settings, "fp32", progress=None).path


@pytest.fixture(scope="module")
def sp_generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured-sp")
    tok = SentencePieceTokenizer.from_file(_sentencepiece_with_bytes(root / "tokenizer.model"))
    path = _tiny_model(root, tok.vocab_size, "sp")
    return Generator(LiteRTModel(path), tok, ("</s>", "<end_of_turn>"), start_token="<s>")


@pytest.fixture(scope="module")
def json_generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("structured-json")
    tok = HFTokenizer(_byte_level_bpe(root / "tokenizer.json"))
    # Padded logits past the tokenizer's 400 ids are never text.
    path = _tiny_model(root, tok.vocab_size + 16, "bpe")
    return Generator(LiteRTModel(path), tok, ("<|endoftext|>",))


# --- the token table --------------------------------------------------------------------------------------------


def test_sentencepiece_table_has_spaces_bytes_and_specials(tmp_path):
    tok = SentencePieceTokenizer.from_file(_sentencepiece_with_bytes(tmp_path / "t.model"))
    table, special = sentencepiece_token_bytes(tok)
    sp = tok._sp
    # Every encoding's pieces, joined as bytes, are the text: spaces from `▁`, bytes from `<0xNN>`.
    for text in ['{"a": "é ü"}', "kalo mine ruta", "x\ty\n€"]:
        ids = tok.encode(text)
        assert b"".join(table[i] for i in ids) == text.encode()
    assert any(sp.IsByte(i) for i in tok.encode("€")), "the test needs a text spelled with byte pieces"
    assert table[sp.PieceToId("<0x0A>")] == b"\n"
    assert {sp.PieceToId(p) for p in ("<unk>", "<s>", "</s>")} <= set(special)
    engine = engine_tokenizer(tok, tok.vocab_size + 8, {sp.PieceToId("<end_of_turn>")}, {sp.PieceToId("<s>")})
    assert engine.vocab_size == tok.vocab_size + 8
    for i in (sp.PieceToId("<end_of_turn>"), sp.PieceToId("<s>"), sp.PieceToId("<unk>"), tok.vocab_size + 3):
        assert engine.is_special_token(i)
    assert not engine.is_special_token(sp.PieceToId("\u2581"))


def test_sentencepiece_style_tokenizer_json_gives_the_engine_its_bytes(tmp_path):
    """A tokenizer.json with `tokenizers`' Metaspace decoder (Llama 2 / Mistral style vocabularies as newer releases
    write them): llguidance reads none by itself; its table gets each piece's bytes, `▁` as a space."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    raw = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    raw.pre_tokenizer, raw.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    raw.train_from_iterator(
        corpus()[:300] + JSON_LINES * 10, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    )
    # Byte pieces in the vocabulary itself, as Llama's: text outside it (é) is spelled with them.
    spec = json.loads(raw.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    tok = HFTokenizer(tmp_path / "tokenizer.json")
    engine = engine_tokenizer(tok, tok.vocab_size, {tok.piece_to_id("</s>")})
    for text in ['{"a": "é"}', "kalo mine ruta"]:
        ids = tok.encode(text)
        assert b"".join(engine.decode_bytes([i]) for i in ids) == (" " + text).encode()  # Metaspace's lead space
    # The first token of `[a-z]+`: every piece spelled in letters only, none that starts with a space.
    allowed = Guide(Constraint.regex(r"[a-z]+"), engine, tok.vocab_size).allowed()
    spelled = [engine.decode_bytes([i]) for i in range(tok.vocab_size)]
    letters = [i for i, b in enumerate(spelled) if re.fullmatch(rb"[a-z]+", b)]
    spaced = [i for i, b in enumerate(spelled) if b.startswith(b" ")]
    assert letters and spaced and allowed[letters].all() and not allowed[spaced].any()


# --- constrained generation -------------------------------------------------------------------------------------


def _run_cases(gen: Generator, samplers: list[SamplerConfig], speculate: bool) -> list[str]:
    failures = []
    for case in CASES["constraints"]:
        constraint = _constraint(case)
        completed = 0
        for prompt in CASES["prompts"][:2]:
            for sampler in samplers:
                ids = gen.encode(prompt)
                out = gen.tokenizer.decode(
                    list(gen.generate_ids(ids, KV, sampler, speculate=speculate, constraint=constraint))
                )
                stats = gen.last_stats
                if case.get("unbounded") and stats.stop_reason == "KV cache full" and not stats.constraint_met:
                    continue  # a random model can write one string of any JSON, or nest brackets, forever
                problems = constraint_violations(case, out, CASES_DIR)
                if problems or not stats.constraint_met:
                    failures.append(f"{case['name']} {sampler} ({stats.stop_reason}): {problems}")
                completed += 1
        if completed == 0:
            failures.append(f"{case['name']}: no output ended (all ran into the cache's end)")
    return failures


SAMPLERS = [
    SamplerConfig(),
    SamplerConfig(temperature=1.0, seed=1),
    SamplerConfig(temperature=0.8, top_k=40, top_p=0.9, seed=2),
    SamplerConfig(temperature=1.2, min_p=0.05, repetition_penalty=1.2, seed=3),
]


@pytest.mark.slow
def test_every_output_matches_sentencepiece(sp_generator):
    """The committed schemas, regexes and grammar, greedy and sampled, speculative and plain: every output valid."""
    assert _run_cases(sp_generator, SAMPLERS, speculate=True) == []
    assert _run_cases(sp_generator, SAMPLERS[:2], speculate=False) == []


@pytest.mark.slow
def test_every_output_matches_tokenizer_json(json_generator):
    assert _run_cases(json_generator, SAMPLERS, speculate=True) == []


@pytest.mark.slow
@pytest.mark.parametrize("speculate", [False, True])
def test_greedy_output_the_constraint_allows_is_unchanged(sp_generator_light, speculate):
    """The mask never changes an allowed argmax: a constraint the unconstrained greedy text satisfies (here: that
    text, then anything) leaves it as it is, token for token, though it forbids most tokens at every step. The model
    has no byte pieces, so its text is always valid UTF-8 (a regex matches characters, not loose bytes)."""
    gen, _ = sp_generator_light
    table, _ = sentencepiece_token_bytes(gen.tokenizer)
    ids = gen.encode("kalo mine ruta")
    free = list(gen.generate_ids(ids, 40, speculate=speculate))
    text = b"".join(table[i] for i in free).decode()  # what the engine sees (a leading `▁` is a space)
    constrained = list(
        gen.generate_ids(ids, 40, speculate=speculate, constraint=Constraint.regex(re.escape(text) + ".*"))
    )
    assert constrained == free and gen.last_stats.constraint_met
    # And a constraint it breaks changes it: the test can fail.
    banned = next(c for c in text if c.isalpha())
    other = list(gen.generate_ids(ids, 40, speculate=speculate, constraint=Constraint.regex(f"[^{banned}]*")))
    assert banned not in gen.tokenizer.decode(other) and other != free


@pytest.mark.slow
def test_speculation_under_a_constraint_gives_the_plain_output(sp_generator):
    gen = sp_generator
    schema = Constraint.json_schema(CASES_DIR / "person.schema.json")
    ids = gen.encode(JSON_LINES[0] + " " + JSON_LINES[0])  # prompt lookup finds drafts in a repeated prompt
    plain = list(gen.generate_ids(ids, 200, speculate=False, constraint=schema))
    drafted = list(gen.generate_ids(ids, 200, speculate=True, constraint=schema))
    assert drafted == plain and gen.last_stats.drafted_tokens > 0


def test_mask_comes_before_top_k():
    """top_k=1 over masked logits picks the best allowed token (a mask after top-k would leave nothing)."""

    class Stub:
        def __init__(self, allowed):
            self.allowed_ids, self.consumed = allowed, []

        def allows(self, token):
            return token in self.allowed_ids

        def mask(self, logits):
            out = np.full_like(logits, -np.inf)
            out[self.allowed_ids] = logits[self.allowed_ids]
            return out

        def consume(self, token):
            self.consumed.append(token)

    logits = np.array([5.0, 4.0, 3.0, 2.0, 1.0], np.float32)
    for config in (SamplerConfig(), SamplerConfig(temperature=1.0, top_k=1), SamplerConfig(temperature=1, top_p=0.1)):
        guide = Stub([2, 4])
        assert Generator._choose(logits, [], Sampler(config), guide) == 2 and guide.consumed == [2]


# --- errors -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_constraints_say_what_is_wrong(sp_generator_light, tmp_path):
    gen, _ = sp_generator_light
    bad_schema = tmp_path / "bad.schema.json"
    bad_schema.write_text('{"type": "object", "properties": {"a": {"type": "intger"}}}')
    not_json = tmp_path / "broken.schema.json"
    not_json.write_text('{"type": "object",\n "properties": }')
    grammar = tmp_path / "broken.lark"
    grammar.write_text('start: item+\nitem: "a" | ("b"\n')
    expected = [
        (Constraint.json_schema(bad_schema), f"{bad_schema}: not a usable JSON schema"),
        (Constraint.lark(grammar), f"{grammar}: line 2, column"),
        (Constraint.regex("(ab"), "--regex: not a usable regex"),
        (Constraint.regex("[A-Z]+"), "--regex: no sequence of this tokenizer's tokens can match it"),
    ]
    for constraint, message in expected:
        with pytest.raises(ConstraintError, match=re.escape(message)):
            list(gen.generate_ids(gen.encode("kalo"), 5, constraint=constraint))
    with pytest.raises(ConstraintError, match=re.escape(f"{not_json}: not JSON: Expecting value (line 2")):
        Constraint.json_schema(not_json)


def test_missing_llguidance_is_a_clear_message(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llguidance", None)
    with pytest.raises(ConstraintError, match=re.escape("pip install 'edge-models[structured]'")):
        Constraint.regex("a+").grammar()


@pytest.fixture(scope="module")
def sp_generator_light(tmp_path_factory):
    """The tests' usual SentencePiece model (no byte pieces: it cannot spell capitals) over a small file."""
    root = tmp_path_factory.mktemp("structured-light")
    tok = SentencePieceTokenizer.from_file(train_sentencepiece(root / "tokenizer.model"))
    model = random_model(registry().get("llama").tiny_config, seed=2, std=0.08)
    settings = ExportSettings(prefill_lengths=(8,), kv_cache_len=64, verify_lengths=(4,))
    path = convert(model, root / "tiny.tflite", settings, "fp32", progress=None).path
    return Generator(LiteRTModel(path), tok, ("</s>",), start_token="<s>"), path


# --- CLI --------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_constraints(run, sp_generator_light, tmp_path):
    gen, path = sp_generator_light
    tok = gen.tokenizer.source
    base = ["generate", path, "--tokenizer", tok, "--stop-token", "</s>", "--prompt", "kalo mine"]
    result = run(*base, "--regex", "(ka|lo|mi){2,5}!", "--max-tokens", "30")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"(ka|lo|mi){2,5}!", result.stdout.strip()), result.stdout
    assert "(end of grammar)" in result.output
    fails_cleanly(run(*base, "--regex", "a", "--json"), "give one of --json, --regex, not several")
    grammar = tmp_path / "g.lark"
    grammar.write_text("start: x\n")
    broken = run(*base, "--grammar", grammar)
    fails_cleanly(broken, f"{grammar}: line 1, column 8: unknown name")
    assert broken.stdout.strip() == ""
    unmatched = run(*base, "--regex", "[A-Z]+")
    fails_cleanly(unmatched, "--regex: no sequence of this tokenizer's tokens can match it")
    assert unmatched.stdout.strip() == ""
    cut = run(*base, "--regex", "(ka|lo){40}", "--max-tokens", "5")
    fails_cleanly(cut, "the output is incomplete: max tokens before the grammar's end")


@pytest.mark.slow
def test_chat_session_replies_match(sp_generator_light):
    from edge_models.runtime import ChatSession

    gen, _ = sp_generator_light
    session = ChatSession(gen, max_tokens=20, constraint=Constraint.regex("(ka|lo) (mi|ne)!"))
    for text in ("kalo", "mine"):
        reply = "".join(session.send(text))
        assert re.fullmatch("(ka|lo) (mi|ne)!", reply) and gen.last_stats.stop_reason == "end of grammar", reply
    assert len(session.messages) == 4
