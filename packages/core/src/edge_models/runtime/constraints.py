"""Structured output: a JSON schema, any JSON object, a regular expression or a Lark grammar that every generated
text matches, enforced token by token with llguidance (an optional dependency: `edge-models[structured]`).

The engine needs the bytes each token id stands for. A `tokenizer.json` is handed over as it is (llguidance reads
byte-level BPE and SentencePiece-style `▁`/byte-fallback vocabularies itself); a SentencePiece `.model` becomes a
table here: `▁` is a space and `<0xNN>` the byte 0xNN, since a table of raw pieces would make every space
impossible. Control, unknown and unused pieces, the stop and start tokens and the model's padded logits are special:
never text. The stop tokens end a text only where the grammar is complete.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.runtime.tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer

INSTALL_HINT = "structured output needs llguidance: pip install 'edge-models[structured]'"
KINDS = ("json-schema", "json", "regex", "lark")
# Whitespace between JSON tokens as pretty-printed JSON has it: a few spaces, or one line break and indentation.
# With llguidance's default (any run of whitespace) Gemma 3 270M fills its answer with blank lines once the grammar
# forbids what it wanted to write.
JSON_OPTIONS = {"whitespace_flexible": True, "whitespace_pattern": r"[\x20\x09]{0,8}|\x0D?\x0A[\x20\x09]{0,40}"}


class ConstraintError(ValueError):
    """A schema, regex or grammar that cannot constrain generation, or llguidance missing."""


def _llguidance():
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401  (the bitmask helpers)
    except ImportError:
        raise ConstraintError(INSTALL_HINT) from None
    return llguidance


@dataclass(frozen=True)
class Constraint:
    """What the output must match. `origin` names where it came from (a file, `--regex`) in error messages."""

    kind: str
    source: str
    origin: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"constraint kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | str | Path, origin: str | None = None) -> Constraint:
        """From a schema (a dict, its JSON text, or a file holding it)."""
        if isinstance(schema, Path):
            origin = origin or str(schema)
            schema = _read(schema)
        if isinstance(schema, str):
            origin = origin or "the JSON schema"
            try:
                parsed = json.loads(schema)
            except json.JSONDecodeError as e:
                raise ConstraintError(f"{origin}: not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        else:
            parsed, origin = schema, origin or "the JSON schema"
        if not isinstance(parsed, dict):
            raise ConstraintError(f"{origin}: a JSON schema is an object, got {type(parsed).__name__}")
        return cls("json-schema", json.dumps(parsed), origin)

    @classmethod
    def any_json(cls) -> Constraint:
        """Any JSON object."""
        return cls("json", json.dumps({"type": "object"}), "--json")

    @classmethod
    def regex(cls, pattern: str, origin: str = "--regex") -> Constraint:
        if not pattern:
            raise ConstraintError(f"{origin}: the pattern is empty")
        return cls("regex", pattern, origin)

    @classmethod
    def lark(cls, grammar: str | Path, origin: str | None = None) -> Constraint:
        """From a Lark grammar's text, or a `.lark` file; `start` is the rule the whole output matches."""
        if isinstance(grammar, Path):
            return cls("lark", _read(grammar), origin or str(grammar))
        return cls("lark", grammar, origin or "the grammar")

    def grammar(self) -> str:
        """The llguidance grammar, checked: a clear error naming the culprit (and the line, for Lark) otherwise."""
        llg = _llguidance()
        matcher = llg.LLMatcher
        try:
            if self.kind == "regex":
                grammar = matcher.grammar_from_regex(self.source)
            elif self.kind == "lark":
                grammar = matcher.grammar_from_lark(self.source)
            else:
                grammar = matcher.grammar_from_json_schema(self.source, defaults=JSON_OPTIONS)
        except ValueError as e:
            raise ConstraintError(f"{self.origin}: {e}") from None
        problem = matcher.validate_grammar(grammar)
        if problem:
            raise ConstraintError(f"{self.origin}: {self._describe(problem)}")
        return grammar

    def _describe(self, problem: str) -> str:
        what = {"json-schema": "not a usable JSON schema", "json": "", "regex": "not a usable regex", "lark": ""}
        # llguidance says "at LINE(COLUMN): ..."; the line is what a user looks for.
        problem = re.sub(r"^(?:at )?(\d+)\((\d+)\):", r"line \1, column \2:", problem.strip())
        if self.kind == "regex":
            # The regex is wrapped in a one-line grammar `start: /.../`; its line and column are not the user's.
            problem = re.sub(r"^line \d+, column \d+: ", "", problem)
            problem = problem.split("\n   1 | start:")[0]
        return f"{what[self.kind]}: {problem}" if what[self.kind] else problem


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConstraintError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConstraintError(f"{path}: cannot read it ({e})") from None


# --- the engine's token table ---------------------------------------------------------------------------------


def sentencepiece_token_bytes(tokenizer: SentencePieceTokenizer) -> tuple[list[bytes], list[int]]:
    """(the bytes each id stands for, the ids that are never text) of a SentencePiece model."""
    sp = tokenizer._sp
    table: list[bytes] = []
    special: list[int] = []
    for i in range(sp.GetPieceSize()):
        piece = sp.IdToPiece(i)
        if sp.IsByte(i):
            table.append(bytes([int(piece[3:5], 16)]))
        elif sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i) or re.fullmatch(r"<unused\d+>", piece):
            # Gemma's `<unusedN>` are user-defined pieces no text ever holds.
            table.append(piece.encode())
            special.append(i)
        else:
            table.append(piece.replace("\u2581", " ").encode())
    return table, special


class _SentencePieceSource:
    """What llguidance's TokenizerWrapper reads: the table, the special ids, and an encoder (for forced text)."""

    def __init__(self, tokenizer: SentencePieceTokenizer, vocab_size: int, stops: set[int], starts: set[int]) -> None:
        table, special = sentencepiece_token_bytes(tokenizer)
        padded = range(len(table), vocab_size)
        self.tokens = [*table, *(b"<pad%d>" % i for i in padded)]
        self.special_token_ids = sorted({*special, *stops, *starts, *padded})
        self.eos_token_id = min(stops)
        self.bos_token_id = None
        self._exact = _exact_encoder(tokenizer)

    def __call__(self, text: bytes | str) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return list(self._exact.EncodeAsIds(text))


def _exact_encoder(tokenizer: SentencePieceTokenizer):
    """The same model encoding text as it is: no dummy-prefix space, no whitespace folding. The engine tokenizes
    forced text with it, and a leading `▁` there would be a space the grammar never asked for."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer._sp.serialized_model_proto())
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    exact = spm.SentencePieceProcessor()
    exact.LoadFromSerializedProto(proto.SerializeToString())
    return exact


_ENGINE_TOKENIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_tokenizer(tokenizer: Tokenizer, vocab_size: int, stop_ids: set[int], start_ids: set[int] = frozenset()):
    """llguidance's tokenizer for `tokenizer` over `vocab_size` logits; built once (about 2-5 s for 262k tokens)."""
    key = (vocab_size, frozenset(stop_ids), frozenset(start_ids))
    cached = _ENGINE_TOKENIZERS.setdefault(tokenizer, {})
    if key not in cached:
        llg = _llguidance()
        stops = sorted(stop_ids)
        if isinstance(tokenizer, HFTokenizer):
            cached[key] = llg.LLTokenizer(_as_llguidance_reads_it(tokenizer), n_vocab=vocab_size, eos_token=stops)
        elif isinstance(tokenizer, SentencePieceTokenizer):
            source = _SentencePieceSource(tokenizer, vocab_size, set(stop_ids), set(start_ids))
            cached[key] = llg.LLTokenizer(llg.TokenizerWrapper(source), n_vocab=vocab_size, eos_token=stops)
        else:
            raise ConstraintError(
                f"structured output needs a SentencePiece or tokenizer.json tokenizer, not {tokenizer}"
            )
    return cached[key]


# The decoder a SentencePiece-style tokenizer.json has from older `tokenizers` releases (Llama 2, Mistral), which
# llguidance 1.9.1 reads; it gives each token the same bytes as the `Metaspace` decoder newer releases write, which
# llguidance refuses ("can't determine decoder type").
_METASPACE_AS_SEQUENCE = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}


def _as_llguidance_reads_it(tokenizer: HFTokenizer) -> str:
    """The tokenizer.json text, its decoder rewritten where llguidance cannot read the one it has."""
    text = tokenizer._tok.to_str()
    spec = json.loads(text)
    if (spec.get("decoder") or {}).get("type") != "Metaspace":
        return text
    if spec["decoder"].get("replacement", "\u2581") != "\u2581":
        raise ConstraintError(f"{tokenizer.source}: structured output needs '\u2581' as the Metaspace replacement")
    return json.dumps({**spec, "decoder": _METASPACE_AS_SEQUENCE})


_SPECIAL_IDS: dict[int, tuple[Any, np.ndarray]] = {}


def _special_ids(engine_tok) -> np.ndarray:
    """The ids llguidance treats as special (never text), stop tokens left out (the engine's verdict on those is
    final); computed once per engine tokenizer (40 ms for 262,144 tokens)."""
    key = id(engine_tok)
    if key not in _SPECIAL_IDS:
        stops = set(engine_tok.eos_tokens)
        ids = [i for i in range(engine_tok.vocab_size) if engine_tok.is_special_token(i) and i not in stops]
        # The tokenizer is kept with its ids so that `id` is never reused while the entry lives.
        _SPECIAL_IDS[key] = (engine_tok, np.array(ids, dtype=np.int64))
    return _SPECIAL_IDS[key][1]


# --- per generation ---------------------------------------------------------------------------------------------


class Guide:
    """One generation's matcher: which tokens may come next, and what has been chosen so far."""

    def __init__(self, constraint: Constraint, engine_tok, vocab_size: int) -> None:
        llg = _llguidance()
        self.constraint = constraint
        self._matcher = llg.LLMatcher(engine_tok, constraint.grammar(), log_level=0)
        if self._matcher.is_error():
            raise ConstraintError(f"{constraint.origin}: {constraint._describe(self._matcher.get_error())}")
        self.vocab_size = vocab_size
        self._special = _special_ids(engine_tok)
        self._tokenizer = engine_tok
        self._bits = llg.numpy.allocate_token_bitmask(1, vocab_size)
        self._fill = llg.numpy.fill_next_token_bitmask
        self._fill(self._matcher, self._bits)
        if self._matcher.is_error() or (not self._bits.any() and not self._matcher.is_accepting()):
            raise ConstraintError(f"{constraint.origin}: no sequence of this tokenizer's tokens can match it")
        self.allowed()  # a first token the engine allows but would refuse is an error now, not mid-reply

    def allowed(self) -> np.ndarray:
        """A boolean per logit: may that token come next?"""
        self._fill(self._matcher, self._bits)
        self._check()
        allowed = np.unpackbits(self._bits[0].view(np.uint8), bitorder="little")[: self.vocab_size].view(bool)
        # llguidance 1.9.1's mask can allow a special token whose name is the text the grammar forces next (a regex
        # "<tool_call>..." over a vocabulary where <tool_call> is a special token), which consuming it then refuses:
        # the few special tokens the mask allows are checked one by one.
        for i in self._special[allowed[self._special]]:
            if not self.allows(int(i)):
                allowed[i] = False
                if not allowed.any() and not self.complete:
                    raise ConstraintError(
                        f"{self.constraint.origin}: no token of this tokenizer can continue the text here "
                        f"(the grammar spells out {self._engine_name(int(i))!r}, a special token)"
                    )
        return allowed

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token the grammar forbids next at -inf (a new array)."""
        return np.where(self.allowed(), logits, -np.inf).astype(np.float32, copy=False)

    def _engine_name(self, token: int) -> str:
        return self._tokenizer.decode_str([token]) if hasattr(self._tokenizer, "decode_str") else str(token)

    def allows(self, token: int) -> bool:
        return self._matcher.validate_tokens([token]) == 1

    def valid_prefix(self, tokens: list[int]) -> int:
        """How many leading `tokens` the grammar accepts from here (drafts are cut there)."""
        return self._matcher.validate_tokens(tokens) if tokens else 0

    def consume(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            self._check()
            raise RuntimeError(f"token {token} was chosen although the grammar forbids it")

    def rollback(self, n: int) -> None:
        if n > 0:
            self._matcher.rollback(n)

    @property
    def complete(self) -> bool:
        """The text so far matches: a stop token may end it."""
        return self._matcher.is_accepting()

    @property
    def finished(self) -> bool:
        """Nothing may follow but a stop token: generation ends here."""
        return self._matcher.is_stopped()

    def _check(self) -> None:
        if self._matcher.is_error():
            # The first line says what went wrong; the rest is the parser's state dump.
            problem = self._matcher.get_error().strip().splitlines()[0]
            raise ConstraintError(f"{self.constraint.origin}: {problem}")
