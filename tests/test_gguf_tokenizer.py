"""SentencePiece models rebuilt from GGUF tokenizer metadata (edge_models.loader.gguf_tokenizer).

Offline and small: each test trains a tiny SentencePiece BPE model, writes its vocabulary into a GGUF the
way llama.cpp's converter does (user-defined spaces spelled " ", chat markers and <unk> typed CONTROL), and
checks that the model rebuilt from that GGUF encodes and decodes exactly like the original.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import gguf
import pytest
import sentencepiece as spm
from click.testing import CliRunner
from sentencepiece import sentencepiece_model_pb2 as pb  # needs protobuf, like edge_models.loader.gguf_tokenizer

from edge_models.cli.tokenizer import tokenizer_group
from edge_models.loader.gguf_tokenizer import (
    GGUFTokenizerError,
    read_gguf_metadata,
    read_gguf_vocab,
    sentencepiece_from_gguf,
    write_sentencepiece_from_gguf,
)

_TRAIN = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(x, y):\n    return x  +  y\n",
    "naïve café über straße — déjà vu",
    "hello  world   again    and     again",
    "Numbers: 3.14159, 2718, 1e-9, 0xFF.",
    "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "\tindented\ttext\twith tabs",
]

_TEXTS = [
    "",
    " ",
    "hello world",
    "  leading and trailing  ",
    "hello     world      again",
    " " * 9 + "x",
    "line one\nline two\n\n\nline five",
    "\ttab\t\tseparated",
    "def add(x, y):\n    return x + y",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "literal <bos> and <eos> stay text",
    "unicode: ü ß é ñ 漢字 かな 한국어 ελληνικά",
    "emoji 🦙🚀👍🏽 and 🇫🇷",
    "numbers 1234567890 3.25e-7 -42",
    "café" * 20,
]

_USER_DEFINED = [
    "<start_of_turn>",
    "<end_of_turn>",
    "\n",
    "\u2581\u2581",
    "\u2581\u2581\u2581",
    "\u2581\u2581\u2581\u2581",
]


def _train(dummy_prefix: bool) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TRAIN * 20),
        model_writer=out,
        model_type="bpe",
        vocab_size=420,
        hard_vocab_limit=False,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=dummy_prefix,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_by_whitespace=False,
        user_defined_symbols=_USER_DEFINED,
        control_symbols=["<mask>"],
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    return out.getvalue()


def _write_gguf(path: Path, kv: dict, arch: str = "llama") -> Path:
    """A GGUF with no tensors and the given metadata (`add_<kind>` method name -> value)."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, (kind, value) in kv.items():
        if kind == "array":
            writer.add_array(key, value)
        else:
            getattr(writer, f"add_{kind}")(key, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _gguf_from_sentencepiece(model: bytes, path: Path, *, space_prefix_key: bool | None) -> Path:
    """Write the vocabulary of a SentencePiece model into a GGUF as llama.cpp's converter does."""
    proto = pb.ModelProto()
    proto.ParseFromString(model)
    tokens, scores, types = [], [], []
    for p in proto.pieces:
        token, kind = p.piece, p.type
        if kind == pb.ModelProto.SentencePiece.USER_DEFINED:
            token = token.replace("\u2581", " ")  # llama.cpp "pre-normalizes" user-defined spaces
            if token.startswith("<"):
                kind = pb.ModelProto.SentencePiece.CONTROL  # transformers calls chat markers special
        if kind == pb.ModelProto.SentencePiece.UNKNOWN:
            kind = pb.ModelProto.SentencePiece.CONTROL  # as in Gemma's GGUF
        tokens.append(token)
        scores.append(p.score)
        types.append(int(kind))
    kv = {
        "tokenizer.ggml.model": ("string", "llama"),
        "tokenizer.ggml.tokens": ("array", tokens),
        "tokenizer.ggml.scores": ("array", scores),
        "tokenizer.ggml.token_type": ("array", types),
        "tokenizer.ggml.padding_token_id": ("uint32", 0),
        "tokenizer.ggml.eos_token_id": ("uint32", 1),
        "tokenizer.ggml.bos_token_id": ("uint32", 2),
        "tokenizer.ggml.unknown_token_id": ("uint32", 3),
        "tokenizer.ggml.mask_token_id": ("uint32", tokens.index("<mask>")),
        "tokenizer.ggml.add_bos_token": ("bool", True),
        "tokenizer.ggml.add_eos_token": ("bool", False),
    }
    if space_prefix_key is not None:
        kv["tokenizer.ggml.add_space_prefix"] = ("bool", space_prefix_key)
    return _write_gguf(path, kv)


@pytest.fixture(scope="module", params=["gemma", "llama"])
def pair(request, tmp_path_factory):
    """(original SentencePiece processor, path of a GGUF holding its vocabulary)."""
    gemma = request.param == "gemma"
    model = _train(dummy_prefix=not gemma)
    # Gemma files say add_space_prefix=False; Llama files often omit the key (llama.cpp then assumes True).
    path = _gguf_from_sentencepiece(
        model, tmp_path_factory.mktemp(request.param) / "tiny.gguf", space_prefix_key=False if gemma else None
    )
    return spm.SentencePieceProcessor(model_proto=model), path


def _rebuilt(path: Path, **kwargs):
    return spm.SentencePieceProcessor(model_proto=sentencepiece_from_gguf(path, **kwargs))


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABC.,;:!?'\"()[]{}0123456789") + [
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\t",
        "é",
        "ß",
        "漢",
        "🦙",
        "\u00a0",
        "<start_of_turn>",
        "<end_of_turn>",
        "<bos>",
    ]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_same_pieces_scores_and_types(pair):
    original, path = pair
    proto_o = pb.ModelProto()
    proto_o.ParseFromString(original.serialized_model_proto())
    proto_r = pb.ModelProto()
    proto_r.ParseFromString(sentencepiece_from_gguf(path))
    assert [(p.piece, p.type) for p in proto_r.pieces] == [(p.piece, p.type) for p in proto_o.pieces]
    assert [p.score for p in proto_r.pieces] == pytest.approx([p.score for p in proto_o.pieces])
    assert proto_r.trainer_spec.model_type == pb.TrainerSpec.BPE
    assert proto_r.trainer_spec.byte_fallback
    assert proto_r.normalizer_spec.name == "identity"
    assert proto_r.normalizer_spec.add_dummy_prefix == proto_o.normalizer_spec.add_dummy_prefix


def test_special_ids(pair):
    original, path = pair
    rebuilt = _rebuilt(path)
    assert rebuilt.vocab_size() == original.vocab_size()
    for name in ("bos_id", "eos_id", "pad_id", "unk_id"):
        assert getattr(rebuilt, name)() == getattr(original, name)(), name
    assert rebuilt.id_to_piece(rebuilt.unk_id()) == "<unk>"
    assert rebuilt.is_unknown(rebuilt.unk_id()) and rebuilt.is_control(rebuilt.bos_id())


def test_encode_decode_equal_to_original(pair):
    original, path = pair
    rebuilt = _rebuilt(path)
    texts = _TEXTS + _random_texts(300)
    assert rebuilt.encode(texts) == original.encode(texts)
    assert rebuilt.encode(texts, out_type=str) == original.encode(texts, out_type=str)
    for text, ids in zip(texts, original.encode(texts)):
        assert rebuilt.decode(ids) == original.decode(ids)
        assert rebuilt.encode(text, add_bos=True) == original.encode(text, add_bos=True)


def test_round_trip_and_markers(pair):
    _, path = pair
    rebuilt = _rebuilt(path)
    gemma = not rebuilt.encode("x", out_type=str)[0].startswith("\u2581")
    for text in _TEXTS + _random_texts(100, seed=1):
        back = rebuilt.decode(rebuilt.encode(text))
        # with a dummy prefix SentencePiece drops the one leading space it added
        assert back == text or (not gemma and back == text.lstrip(" ") and text.startswith(" ")), repr(text)
    ids = rebuilt.encode("<start_of_turn>user\n")
    assert rebuilt.id_to_piece(ids[0 if gemma else 1]) == "<start_of_turn>"
    spaces = rebuilt.encode("a" + " " * 4 + "b", out_type=str)
    assert "\u2581" * 4 in spaces or "\u2581" * 4 + "b" in spaces


def test_verbatim_types_keep_control(pair):
    original, path = pair
    rebuilt = _rebuilt(path, control_as_user_defined=False)
    marker = original.piece_to_id("<start_of_turn>")
    assert rebuilt.is_control(marker)
    assert marker not in rebuilt.encode("<start_of_turn>")


def test_write_atomic_and_cli(pair, tmp_path):
    original, path = pair
    out = write_sentencepiece_from_gguf(path, tmp_path / "sub" / "tokenizer.model")
    assert out.read_bytes() == sentencepiece_from_gguf(path)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokenizer.model"]

    # A failed rebuild leaves an existing output untouched and no temporary file behind.
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all, just bytes")
    with pytest.raises(GGUFTokenizerError, match="not a GGUF file"):
        write_sentencepiece_from_gguf(junk, out)
    assert out.read_bytes() == sentencepiece_from_gguf(path)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokenizer.model"]

    result = CliRunner().invoke(tokenizer_group, ["from-gguf", str(path), "-o", str(tmp_path / "cli.model")])
    assert result.exit_code == 0, result.output
    assert f"vocab size: {original.vocab_size()}" in result.output
    assert "bos='<bos>' (2)" in result.output and "unk='<unk>' (3)" in result.output
    cli_model = spm.SentencePieceProcessor(model_file=str(tmp_path / "cli.model"))
    assert cli_model.encode(_TEXTS) == original.encode(_TEXTS)

    result = CliRunner().invoke(tokenizer_group, ["from-gguf", str(junk), "-o", str(tmp_path / "x.model")])
    assert result.exit_code == 1 and "not a GGUF file" in result.output
    assert not (tmp_path / "x.model").exists()


def test_metadata_reader_types(tmp_path):
    path = _write_gguf(
        tmp_path / "kv.gguf",
        {
            "t.u8": ("uint8", 200),
            "t.i8": ("int8", -5),
            "t.u16": ("uint16", 60000),
            "t.i16": ("int16", -30000),
            "t.u32": ("uint32", 4_000_000_000),
            "t.i32": ("int32", -7),
            "t.f32": ("float32", 0.5),
            "t.u64": ("uint64", 2**40),
            "t.i64": ("int64", -(2**40)),
            "t.f64": ("float64", 1.25),
            "t.bool": ("bool", True),
            "t.str": ("string", "héllo ▁ 🦙"),
            "t.ints": ("array", [1, 2, 3]),
            "t.floats": ("array", [0.25, -1.5]),
            "t.strs": ("array", ["a", "", " b"]),
        },
    )
    meta = read_gguf_metadata(path)
    assert meta["general.architecture"] == "llama"
    expected = {
        "t.u8": 200,
        "t.i8": -5,
        "t.u16": 60000,
        "t.i16": -30000,
        "t.u32": 4_000_000_000,
        "t.i32": -7,
        "t.f32": 0.5,
        "t.u64": 2**40,
        "t.i64": -(2**40),
        "t.f64": 1.25,
        "t.bool": True,
        "t.str": "héllo ▁ 🦙",
        "t.ints": [1, 2, 3],
        "t.floats": [0.25, -1.5],
        "t.strs": ["a", "", " b"],
    }
    for key, value in expected.items():
        assert meta[key] == value, key
    assert set(read_gguf_metadata(path, ("t.s",))) == {"t.str", "t.strs"}


def _tokenizer_kv(**overrides) -> dict:
    tokens = ["<unk>", "<s>", "</s>", "\u2581a", "b"]
    kv = {
        "tokenizer.ggml.model": ("string", "llama"),
        "tokenizer.ggml.tokens": ("array", tokens),
        "tokenizer.ggml.scores": ("array", [0.0, 0.0, 0.0, -1.0, -2.0]),
        "tokenizer.ggml.token_type": ("array", [2, 3, 3, 1, 1]),
    }
    kv.update(overrides)
    return {k: v for k, v in kv.items() if v is not None}


def test_minimal_llama_vocab_without_special_ids(tmp_path):
    path = _write_gguf(tmp_path / "min.gguf", _tokenizer_kv())
    vocab = read_gguf_vocab(path)
    assert vocab.model == "llama" and vocab.unk_id is None and vocab.add_space_prefix is None
    sp = _rebuilt(path)
    assert sp.unk_id() == 0 and sp.bos_id() == -1
    assert sp.encode("a b", out_type=str) == ["\u2581a", "\u2581", "b"]  # dummy prefix on by default


@pytest.mark.parametrize(
    ("kv", "message"),
    [
        ({"general.name": ("string", "no tokenizer here")}, r"no tokenizer in the GGUF metadata"),
        (
            _tokenizer_kv(
                **{"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.merges": ("array", ["\u0120 a"])}
            ),
            r"'gpt2' \(byte-level BPE",
        ),
        (_tokenizer_kv(**{"tokenizer.ggml.model": ("string", "bert")}), r"'bert' \(WordPiece"),
        (_tokenizer_kv(**{"tokenizer.ggml.model": ("string", "t5")}), r"'t5' \(SentencePiece Unigram"),
        (_tokenizer_kv(**{"tokenizer.ggml.model": None}), r"no 'tokenizer.ggml.model' key"),
        (_tokenizer_kv(**{"tokenizer.ggml.tokens": None}), r"no 'tokenizer.ggml.tokens' array"),
        (_tokenizer_kv(**{"tokenizer.ggml.scores": None}), r"without tokenizer.ggml.scores"),
        (_tokenizer_kv(**{"tokenizer.ggml.token_type": ("array", [2, 3, 3, 1])}), r"token_type' has 4 entries"),
        (_tokenizer_kv(**{"tokenizer.ggml.bos_token_id": ("uint32", 99)}), r"bos_token_id' = 99 is outside"),
        (
            _tokenizer_kv(**{"tokenizer.ggml.tokens": ("array", ["<unk>", "<s>", "</s>", "a b", "a\u2581b"])}),
            r"duplicate token",
        ),
        (
            _tokenizer_kv(
                **{
                    "tokenizer.ggml.token_type": ("array", [1, 3, 3, 1, 1]),
                    "tokenizer.ggml.tokens": ("array", ["x", "<s>", "</s>", "\u2581a", "b"]),
                }
            ),
            r"no unknown token",
        ),
        (_tokenizer_kv(**{"tokenizer.ggml.token_type": ("array", [2, 3, 3, 6, 1])}), r"typed BYTE"),
    ],
    ids=[
        "no-tokenizer",
        "gpt2",
        "bert",
        "t5",
        "no-model-key",
        "no-tokens",
        "no-scores",
        "length-mismatch",
        "bad-special-id",
        "duplicates",
        "no-unk",
        "bad-byte-token",
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, kv, message):
    path = _write_gguf(tmp_path / "bad.gguf", kv)
    with pytest.raises(GGUFTokenizerError, match=message) as info:
        sentencepiece_from_gguf(path)
    assert str(path) in str(info.value)


def test_missing_and_non_gguf_files(tmp_path):
    with pytest.raises(GGUFTokenizerError, match="GGUF file not found"):
        sentencepiece_from_gguf(tmp_path / "nope.gguf")
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(GGUFTokenizerError, match="not a GGUF file"):
        sentencepiece_from_gguf(bad)
    good = _write_gguf(tmp_path / "ok.gguf", _tokenizer_kv())
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(GGUFTokenizerError, match="truncated GGUF metadata"):
        sentencepiece_from_gguf(cut)
