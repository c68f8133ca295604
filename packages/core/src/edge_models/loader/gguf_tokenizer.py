"""Rebuild a SentencePiece ``tokenizer.model`` from the tokenizer a GGUF file carries in its metadata.

llama.cpp stores a SentencePiece ("llama" style) vocabulary as three parallel arrays --
``tokenizer.ggml.tokens``, ``tokenizer.ggml.scores`` and ``tokenizer.ggml.token_type`` -- plus the ids of
the special tokens and a few flags. That is everything a SentencePiece BPE model needs, so we write a
``ModelProto`` with:

* model type BPE, byte fallback on (when the vocabulary has ``<0x00>``..``<0xFF>`` byte tokens);
* the identity normalizer: no NFKC, no whitespace folding, spaces escaped to ``▁``;
* a dummy prefix only when the file asks for one (``tokenizer.ggml.add_space_prefix``; llama.cpp assumes
  it is on when the key is missing, and so do we);
* the token types mapped one to one (GGUF uses SentencePiece's numbering), with three repairs:

  - llama.cpp spells user-defined tokens made of spaces with real spaces ("  "). SentencePiece escapes the
    input's spaces to ``▁`` *before* it matches pieces, so such a piece could never match: every space in
    a piece is respelled ``▁``.
  - files often type ``<unk>`` CONTROL; SentencePiece needs exactly one UNKNOWN piece, so the id named by
    ``tokenizer.ggml.unknown_token_id`` (or the one piece typed UNKNOWN, or ``<unk>``) becomes UNKNOWN.
  - llama.cpp's converter types every token that transformers calls "special" CONTROL, including chat
    markers such as Gemma's ``<start_of_turn>`` that the original ``tokenizer.model`` has as USER_DEFINED.
    SentencePiece never matches a CONTROL piece in text, so a chat template written as text would be cut
    into characters. By default (``control_as_user_defined=True``) every CONTROL token except the
    bos/eos/pad/unk/sep/cls/mask ids the file names becomes USER_DEFINED, which is how transformers and
    llama.cpp (with special-token parsing) treat them.

Only the metadata is read (a small parser below); the tensor data of a multi-GB file is never touched.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_models.io.files import write_atomically

__all__ = [
    "GGUFTokenizerError",
    "GGUFVocab",
    "read_gguf_metadata",
    "read_gguf_vocab",
    "sentencepiece_from_gguf",
    "write_sentencepiece_from_gguf",
    "write_token_files_from_gguf",
]

# Token types, shared by GGUF (llama.cpp's `llama_token_type`) and SentencePiece's ModelProto.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_TYPE_NAMES = {
    NORMAL: "normal",
    UNKNOWN: "unknown",
    CONTROL: "control",
    USER_DEFINED: "user-defined",
    UNUSED: "unused",
    BYTE: "byte",
}

# Tokenizer models llama.cpp writes to `tokenizer.ggml.model`, and what they are, for error messages.
_OTHER_TOKENIZERS = {
    "gpt2": "byte-level BPE (GPT-2 / tiktoken style, with merges)",
    "bert": "WordPiece (BERT)",
    "t5": "SentencePiece Unigram (T5)",
    "rwkv": "RWKV trie tokenizer",
    "plamo2": "PLaMo-2 Aho-Corasick tokenizer",
    "none": "no tokenizer",
}
_SPM_MODELS = ("llama",)

_SPACE = "\u2581"  # ▁, SentencePiece's escaped space


class GGUFTokenizerError(ValueError):
    """The GGUF file is unreadable, has no tokenizer, or one we cannot express as SentencePiece BPE."""


# ---------------------------------------------------------------------------------------------------------
# Metadata reader. GGUF v2/v3: magic "GGUF", u32 version, u64 tensor count, u64 key/value count, then the
# key/value pairs: (string key, u32 value type, value). Strings are u64 length + UTF-8 bytes; arrays are
# u32 element type + u64 count + elements. Tensor infos and data follow; we stop before them.

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf: memoryview, path: Path, endian: str) -> None:
        self.buf, self.path, self.endian, self.pos = buf, path, endian, 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFTokenizerError(f"{self.path}: truncated GGUF metadata (needed {n} bytes at offset {self.pos})")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, code: str) -> Any:
        size = struct.calcsize(code)
        return struct.unpack(self.endian + code, self.take(size))[0]

    def string(self) -> str:
        raw = self.take(self.scalar("Q"))
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            # llama.cpp keeps invalid UTF-8 as-is; keep what we can rather than refuse the whole file.
            return bytes(raw).decode("utf-8", errors="replace")

    def value(self, vtype: int, want: bool) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.scalar("I"), self.scalar("Q")
            if etype in _SCALARS:
                code = _SCALARS[etype]
                raw = self.take(count * struct.calcsize(code))
                return list(struct.unpack(f"{self.endian}{count}{code}", raw)) if want else None
            if etype == _STRING:
                if not want:
                    for _ in range(count):
                        self.take(self.scalar("Q"))
                    return None
                return [self.string() for _ in range(count)]
            items = [self.value(etype, want) for _ in range(count)]  # nested arrays
            return items if want else None
        raise GGUFTokenizerError(f"{self.path}: unknown GGUF value type {vtype} at offset {self.pos}")


def read_gguf_metadata(path: str | os.PathLike[str], prefixes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (not its tensors).

    ``prefixes`` limits which keys are decoded (others are skipped without building their values), e.g.
    ``("general.", "tokenizer.")``. Arrays come back as Python lists.
    """
    path = Path(path)
    if not path.is_file():
        raise GGUFTokenizerError(f"{path}: GGUF file not found")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < 24:
            raise GGUFTokenizerError(f"{path}: not a GGUF file (too short)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                return _parse(view, path, prefixes)
            finally:
                view.release()


def _parse(view: memoryview, path: Path, prefixes: tuple[str, ...] | None) -> dict[str, Any]:
    if bytes(view[:4]) != b"GGUF":
        raise GGUFTokenizerError(f"{path}: not a GGUF file (magic {bytes(view[:4])!r}, expected b'GGUF')")
    (version,) = struct.unpack("<I", view[4:8])
    endian = "<"
    if version & 0xFFFF == 0:  # written on a big-endian machine
        endian, version = ">", struct.unpack(">I", view[4:8])[0]
    if version < 2:
        raise GGUFTokenizerError(f"{path}: GGUF version {version} is not supported (need 2 or later)")
    cur = _Cursor(view, path, endian)
    cur.pos = 8
    cur.scalar("Q")  # tensor count
    n_kv = cur.scalar("Q")
    out: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.scalar("I")
        want = prefixes is None or key.startswith(prefixes)
        value = cur.value(vtype, want)
        if want:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------------


@dataclass
class GGUFVocab:
    """The tokenizer a GGUF file describes, as llama.cpp wrote it."""

    path: Path
    model: str
    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    special_ids: tuple[int, ...] = ()  # every id the file names as bos/eos/unk/pad/sep/cls/mask
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    architecture: str | None = None
    # End of a turn / of a message with tool calls (chat models), where the file names them.
    eot_id: int | None = None
    eom_id: int | None = None
    chat_template: str | None = None  # `tokenizer.chat_template`: the Jinja template transformers would use


_SPECIAL_KEYS = ("bos", "eos", "unknown", "padding", "seperator", "separator", "cls", "mask")


def read_gguf_vocab(path: str | os.PathLike[str]) -> GGUFVocab:
    """Read ``tokenizer.ggml.*`` from a GGUF file, checking the arrays are present and consistent."""
    path = Path(path)
    meta = read_gguf_metadata(path, ("general.architecture", "tokenizer.ggml.", "tokenizer.chat_template"))
    model = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if model is None and tokens is None:
        raise GGUFTokenizerError(
            f"{path}: no tokenizer in the GGUF metadata (no 'tokenizer.ggml.model' / 'tokenizer.ggml.tokens' keys)"
        )
    if model is None:
        raise GGUFTokenizerError(f"{path}: GGUF metadata has tokens but no 'tokenizer.ggml.model' key")
    if tokens is None:
        raise GGUFTokenizerError(f"{path}: GGUF tokenizer '{model}' has no 'tokenizer.ggml.tokens' array")
    n = len(tokens)
    scores = meta.get("tokenizer.ggml.scores")
    types = meta.get("tokenizer.ggml.token_type")
    for key, arr in (("scores", scores), ("token_type", types)):
        if arr is not None and len(arr) != n:
            raise GGUFTokenizerError(
                f"{path}: 'tokenizer.ggml.{key}' has {len(arr)} entries but 'tokenizer.ggml.tokens' has {n}"
            )

    def ident(name: str) -> int | None:
        value = meta.get(f"tokenizer.ggml.{name}_token_id")
        if value is None:
            return None
        value = int(value)
        if not 0 <= value < n:
            raise GGUFTokenizerError(
                f"{path}: 'tokenizer.ggml.{name}_token_id' = {value} is outside the vocabulary (0..{n - 1})"
            )
        return value

    specials = tuple(sorted({i for k in _SPECIAL_KEYS if (i := ident(k)) is not None}))

    def flag(name: str) -> bool | None:
        value = meta.get(f"tokenizer.ggml.{name}")
        return None if value is None else bool(value)

    return GGUFVocab(
        path=path,
        model=str(model),
        tokens=list(tokens),
        scores=[float(s) for s in scores] if scores is not None else [],
        types=[int(t) for t in types] if types is not None else [],
        bos_id=ident("bos"),
        eos_id=ident("eos"),
        unk_id=ident("unknown"),
        pad_id=ident("padding"),
        special_ids=specials,
        add_bos=flag("add_bos_token"),
        add_eos=flag("add_eos_token"),
        add_space_prefix=flag("add_space_prefix"),
        architecture=meta.get("general.architecture"),
        eot_id=ident("eot"),
        eom_id=ident("eom"),
        chat_template=meta.get("tokenizer.chat_template") or None,
    )


def _pb2():
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:  # sentencepiece without protobuf
        raise GGUFTokenizerError(
            f"writing a SentencePiece model needs `sentencepiece` and `protobuf` (pip install protobuf): {e}"
        ) from None
    return sentencepiece_model_pb2


def _check_spm(vocab: GGUFVocab) -> None:
    path = vocab.path
    if vocab.model not in _SPM_MODELS:
        what = _OTHER_TOKENIZERS.get(vocab.model, "a tokenizer this tool does not know")
        raise GGUFTokenizerError(
            f"{path}: the GGUF tokenizer is '{vocab.model}' ({what}), not a SentencePiece BPE ('llama') "
            "vocabulary; it cannot be rebuilt as a SentencePiece tokenizer.model"
        )
    missing = [k for k, arr in (("scores", vocab.scores), ("token_type", vocab.types)) if not arr]
    if missing:
        raise GGUFTokenizerError(
            f"{path}: SentencePiece tokenizer without {' and '.join(f'tokenizer.ggml.{k}' for k in missing)}; "
            "both are needed to rebuild tokenizer.model"
        )
    bad = sorted({t for t in vocab.types if t not in _TYPE_NAMES})
    if bad:
        raise GGUFTokenizerError(f"{path}: unknown token type(s) {bad} in 'tokenizer.ggml.token_type'")


def _pick_unk(vocab: GGUFVocab, pieces: list[str]) -> int:
    if vocab.unk_id is not None:
        return vocab.unk_id
    typed = [i for i, t in enumerate(vocab.types) if t == UNKNOWN]
    if typed:
        return typed[0]
    if "<unk>" in pieces:
        return pieces.index("<unk>")
    raise GGUFTokenizerError(
        f"{vocab.path}: no unknown token (no 'tokenizer.ggml.unknown_token_id', no token typed UNKNOWN, no '<unk>'); "
        "SentencePiece needs one"
    )


def sentencepiece_from_gguf(path: str | os.PathLike[str], *, control_as_user_defined: bool = True) -> bytes:
    """A serialized SentencePiece ``ModelProto`` (BPE) equivalent to the GGUF file's tokenizer.

    Raises :class:`GGUFTokenizerError` naming the file and the problem when there is no tokenizer, the
    tokenizer is not SentencePiece-style (e.g. ``gpt2`` byte-level BPE), or its vocabulary cannot be
    expressed as a SentencePiece model (empty or duplicate pieces).
    """
    vocab = read_gguf_vocab(path)
    _check_spm(vocab)
    return _build(vocab, control_as_user_defined).SerializeToString()


def _build(vocab: GGUFVocab, control_as_user_defined: bool):
    pb = _pb2()
    path = vocab.path
    # Spaces inside pieces: SentencePiece only ever sees ▁ (see the module docstring).
    pieces = [t.replace(" ", _SPACE) for t in vocab.tokens]
    empty = [i for i, p in enumerate(pieces) if not p]
    if empty:
        raise GGUFTokenizerError(
            f"{path}: empty token string(s) at id(s) {empty[:10]}; SentencePiece pieces must be non-empty"
        )
    seen: dict[str, int] = {}
    dups: list[tuple[int, int, str]] = []
    for i, p in enumerate(pieces):
        j = seen.setdefault(p, i)
        if j != i:
            dups.append((j, i, p))
    if dups:
        shown = ", ".join(f"{p!r} (ids {a} and {b})" for a, b, p in dups[:5])
        raise GGUFTokenizerError(
            f"{path}: {len(dups)} duplicate token(s) after respelling spaces as '▁': {shown}; "
            "SentencePiece needs unique pieces"
        )

    types = list(vocab.types)
    unk = _pick_unk(vocab, pieces)
    keep_control = set(vocab.special_ids)
    for i, t in enumerate(types):
        if t == UNKNOWN and i != unk:
            types[i] = CONTROL  # SentencePiece allows a single UNKNOWN piece
            keep_control.add(i)
    types[unk] = UNKNOWN
    if control_as_user_defined:
        types = [USER_DEFINED if t == CONTROL and i not in keep_control else t for i, t in enumerate(types)]

    byte_pieces = {f"<0x{b:02X}>" for b in range(256)}
    for i, t in enumerate(types):
        if t == BYTE and pieces[i] not in byte_pieces:
            raise GGUFTokenizerError(f"{path}: token {i} {pieces[i]!r} is typed BYTE but is not of the form <0xXX>")
    has_bytes = any(t == BYTE for t in types)

    model = pb.ModelProto()
    for piece, score, t in zip(pieces, vocab.scores, types):
        sp = model.pieces.add()
        sp.piece = piece
        sp.score = score
        sp.type = t

    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(pieces)
    spec.byte_fallback = has_bytes
    spec.split_digits = False
    spec.allow_whitespace_only_pieces = True
    spec.unk_id, spec.unk_piece = unk, pieces[unk]
    for name, ident in (("bos", vocab.bos_id), ("eos", vocab.eos_id), ("pad", vocab.pad_id)):
        # SentencePiece reports bos/eos/pad only when the piece is CONTROL; otherwise leave them unset (-1).
        if ident is not None and ident != unk and types[ident] == CONTROL:
            setattr(spec, f"{name}_id", ident)
            setattr(spec, f"{name}_piece", pieces[ident])
        else:
            setattr(spec, f"{name}_id", -1)

    norm = model.normalizer_spec
    norm.name = "identity"
    norm.precompiled_charsmap = b""
    # llama.cpp: a SentencePiece vocabulary adds the space prefix unless the file says otherwise.
    norm.add_dummy_prefix = True if vocab.add_space_prefix is None else vocab.add_space_prefix
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return model


def write_sentencepiece_from_gguf(
    gguf: str | os.PathLike[str], out_path: str | os.PathLike[str], *, control_as_user_defined: bool = True
) -> Path:
    """Rebuild the SentencePiece model of ``gguf`` and write it to ``out_path`` atomically (temp file + rename)."""
    data = sentencepiece_from_gguf(gguf, control_as_user_defined=control_as_user_defined)
    out = write_atomically(out_path, lambda f: f.write(data))
    return out


def write_token_files_from_gguf(
    gguf: str | os.PathLike[str], directory: str | os.PathLike[str], *, stop_tokens: tuple[str, ...] = ()
) -> Path:
    """The GGUF's tokenizer and token conventions as a Hugging Face checkpoint keeps them, in ``directory``, for
    everything that reads a checkpoint's conventions (``edge_models.hf.read_checkpoint_tokens``):
    ``tokenizer.model``; ``tokenizer_config.json`` with the special tokens, whether text starts with the start
    token, and the chat template; ``generation_config.json`` with every end-of-generation id.

    A GGUF names one end-of-sequence id (sometimes an end-of-turn one too), and llama.cpp also stops on the
    well-known end-of-turn tokens its vocabulary has (Gemma's ``<end_of_turn>``, ChatML's ``<|im_end|>``).
    ``stop_tokens`` (a family's defaults) play that part here, where the vocabulary has them.
    """
    directory = Path(directory)
    write_sentencepiece_from_gguf(gguf, directory / "tokenizer.model")
    vocab = read_gguf_vocab(gguf)
    pieces = [t.replace(" ", _SPACE) for t in vocab.tokens]  # as spelled in tokenizer.model
    config: dict[str, Any] = {
        f"{name}_token": pieces[i]
        for name, i in (("bos", vocab.bos_id), ("eos", vocab.eos_id), ("unk", vocab.unk_id), ("pad", vocab.pad_id))
        if i is not None
    }
    # llama.cpp starts SentencePiece text with the start token unless the file says otherwise.
    config["add_bos_token"] = vocab.bos_id is not None and vocab.add_bos is not False
    if vocab.chat_template:
        config["chat_template"] = vocab.chat_template
    stops = [i for i in (vocab.eos_id, vocab.eot_id, vocab.eom_id) if i is not None]
    stops += [pieces.index(t) for t in stop_tokens if t in pieces]
    generation = {"bos_token_id": vocab.bos_id, "eos_token_id": list(dict.fromkeys(stops))}
    for name, data in (("tokenizer_config.json", config), ("generation_config.json", generation)):
        text = json.dumps(data, indent=2, ensure_ascii=False).encode()
        write_atomically(directory / name, lambda f, text=text: f.write(text))
    return directory
