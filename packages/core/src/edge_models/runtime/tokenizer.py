"""Tokenizers the runtime accepts: SentencePiece `.model` and HF `tokenizer.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class TokenizerError(ValueError):
    pass


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def piece_to_id(self, piece: str) -> int | None:
        """The id of `piece` if it is one whole token, else None."""

    def id_to_piece(self, i: int) -> str: ...


class SentencePieceTokenizer:
    def __init__(self, model: bytes, source: str = "<bytes>") -> None:
        import sentencepiece as spm

        self.source = source
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model)
        except Exception as e:
            raise TokenizerError(f"{source}: not a SentencePiece model ({e})") from None
        self.vocab_size = self._sp.GetPieceSize()

    @classmethod
    def from_file(cls, path: str | Path) -> SentencePieceTokenizer:
        return cls(Path(path).read_bytes(), str(path))

    def encode(self, text: str) -> list[int]:
        return list(self._sp.EncodeAsIds(text))

    def decode(self, ids: list[int]) -> str:
        return self._sp.DecodeIds(list(ids))

    def piece_to_id(self, piece: str) -> int | None:
        i = self._sp.PieceToId(piece)
        # Unknown pieces map to <unk>; only accept the unk id for the unk piece itself.
        return i if self._sp.IdToPiece(i) == piece else None

    def id_to_piece(self, i: int) -> str:
        return self._sp.IdToPiece(i)


class HFTokenizer:
    def __init__(self, path: str | Path, json_text: str | None = None) -> None:
        """Read `path`, or take the file's `json_text` (from inside a bundle) with `path` naming its origin."""
        from tokenizers import Tokenizer as _Tok

        self.source = str(path)
        try:
            self._tok = _Tok.from_str(json_text) if json_text is not None else _Tok.from_file(str(path))
        except Exception as e:
            raise TokenizerError(f"{path}: not a HF tokenizer.json ({e})") from None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def piece_to_id(self, piece: str) -> int | None:
        return self._tok.token_to_id(piece)

    def id_to_piece(self, i: int) -> str:
        return self._tok.id_to_token(i)


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: tokenizer file not found")
    if path.suffix == ".json":
        return HFTokenizer(path)
    return SentencePieceTokenizer.from_file(path)
