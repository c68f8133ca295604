"""Read what a runtime needs from a `.task` (MediaPipe) or `.litertlm` (LiteRT-LM) bundle.

The `.litertlm` header is a FlatBuffer (schema from `litert-lm-builder`, which only needs `flatbuffers`); the
sections it points at hold the `.tflite`, the tokenizer (SentencePiece, or a zlib-compressed `tokenizer.json`)
and an `LlmMetadata` protobuf. No LiteRT-LM engine is needed to read it.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.hf.chat_template import ChatTemplate
from edge_models.runtime.tokenizer import HFTokenizer, SentencePieceTokenizer, Tokenizer
from edge_models.spec import PromptTemplate

BUNDLE_SUFFIXES = (".task", ".litertlm")
# Where a bundle keeps the prompt and greedy tokens recorded at conversion: a `.task` zip entry and a `.litertlm`
# system-metadata string, both of which MediaPipe and LiteRT-LM ignore.
SELF_TEST_KEY = "edge_models_self_test"
SELF_TEST_ENTRY = "EDGE_MODELS_SELF_TEST"
# And where it keeps notes on the conversion (a JSON object of strings: the recipe, a merged LoRA adapter).
NOTES_KEY = "edge_models_notes"
NOTES_ENTRY = "EDGE_MODELS_NOTES"

_MAGIC = b"LITERTLM"
_PREFILL_DECODE = "tf_lite_prefill_decode"
_HEADER_END_AT, _HEADER_BEGIN = 24, 32


class BundleFormatError(ValueError):
    """A file that is not a readable bundle; the message names the file and what is wrong."""


@dataclass
class BundleContents:
    path: Path
    model_span: tuple[int, int]  # (offset, length) of the prefill/decode model in the bundle file
    tokenizer: Tokenizer
    start_token: str | None
    stop_tokens: tuple[str, ...]
    affixes: PromptTemplate = field(default_factory=PromptTemplate)
    chat_template: ChatTemplate | None = None
    self_test: dict | None = None
    notes: dict[str, str] = field(default_factory=dict)
    sections: list[tuple[str, int]] = field(default_factory=list)

    @functools.cached_property
    def tflite(self) -> bytes:
        """The model's bytes, read when asked for (a runtime maps `runtime.weight_cache.bundle_model_file` instead)."""
        offset, length = self.model_span
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


def read_bundle(path: str | Path) -> BundleContents:
    path = Path(path)
    if path.suffix == ".task":
        return _read_task(path)
    if path.suffix == ".litertlm":
        return _read_litertlm(path)
    raise BundleFormatError(f"{path}: not a bundle (expected {' or '.join(BUNDLE_SUFFIXES)})")


def _read_task(path: Path) -> BundleContents:
    from edge_models.formats.task import TFLITE_ENTRY, read_task

    bundle = read_task(path)
    p = bundle.params
    tok = SentencePieceTokenizer(bundle.tokenizer_model, f"{path}:TOKENIZER_MODEL")
    start = p.start_token
    if start is None and p.start_token_id is not None:
        start = tok.id_to_piece(p.start_token_id)
    self_test = _self_test(bundle.read(SELF_TEST_ENTRY).decode(), path) if SELF_TEST_ENTRY in bundle else None
    return BundleContents(
        path=path,
        model_span=(bundle.entries[TFLITE_ENTRY].offset, bundle.entries[TFLITE_ENTRY].size),
        tokenizer=tok,
        start_token=start,
        stop_tokens=tuple(p.stop_tokens),
        affixes=p.prompt_template,
        self_test=self_test,
        notes=_notes(bundle.read(NOTES_ENTRY).decode(), path) if NOTES_ENTRY in bundle else {},
        sections=[(e.name, e.size) for e in bundle.entries.values()],
    )


def _notes(text: str, path: Path) -> dict[str, str]:
    try:
        notes = json.loads(text)
    except ValueError:
        notes = None
    if not isinstance(notes, dict):
        raise BundleFormatError(f"{path}: the conversion notes are not a JSON object")
    return {str(k): str(v) for k, v in notes.items()}


def _self_test(text: str, path: Path) -> dict:
    try:
        record = json.loads(text)
    except ValueError:
        raise BundleFormatError(f"{path}: the self-test record is not JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("tokens"), list):
        raise BundleFormatError(f"{path}: the self-test record has no token list")
    return record


def _mapped(path: Path) -> bytes | mmap.mmap:
    """The file's bytes, memory-mapped: only the sections sliced out are read (a bundle of a 5 GB model was read
    whole, then its model section copied out of it: twice the model in memory)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _litertlm_header(path: Path, data: bytes | mmap.mmap):
    from litert_lm_builder import litertlm_header_schema_py_generated as schema

    if data[:8] != _MAGIC:
        raise BundleFormatError(f"{path}: not a .litertlm file (no LITERTLM magic)")
    (end,) = struct.unpack_from("<Q", data, _HEADER_END_AT)
    if not _HEADER_BEGIN < end <= len(data):
        raise BundleFormatError(f"{path}: truncated .litertlm header")
    return schema, schema.LiteRTLMMetaData.GetRootAs(data[_HEADER_BEGIN:end], 0)


def _string_items(schema, count: int, item) -> dict[str, str]:
    out = {}
    for i in range(count):
        kv = item(i)
        value = kv.Value()
        if kv.ValueType() != schema.VData.StringValue or value is None:
            continue
        s = schema.StringValue()
        s.Init(value.Bytes, value.Pos)
        out[kv.Key().decode()] = (s.Value() or b"").decode()
    return out


def _read_litertlm(path: Path) -> BundleContents:
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    if not path.is_file():
        raise BundleFormatError(f"{path}: no such file")
    data = _mapped(path)
    schema, header = _litertlm_header(path, data)
    names = {v: k for k, v in vars(schema.AnySectionDataType).items() if not k.startswith("_")}
    tflite = tokenizer = meta = None
    sections = []
    objects = header.SectionMetadata()
    for i in range(objects.ObjectsLength() if objects else 0):
        obj = objects.Objects(i)
        begin, end, kind = obj.BeginOffset(), obj.EndOffset(), obj.DataType()
        if not 0 <= begin <= end <= len(data):
            raise BundleFormatError(f"{path}: section {i} lies outside the file")
        sections.append((names.get(kind, str(kind)), end - begin))
        items = _string_items(schema, obj.ItemsLength(), obj.Items)
        if kind == schema.AnySectionDataType.TFLiteModel:
            if items.get("model_type", _PREFILL_DECODE) == _PREFILL_DECODE:
                tflite = (begin, end - begin)  # read or mapped later: it is most of the file
            continue
        body = data[begin:end]
        if kind == schema.AnySectionDataType.SP_Tokenizer:
            tokenizer = SentencePieceTokenizer(body, f"{path}:SP_Tokenizer")
        elif kind == schema.AnySectionDataType.HF_Tokenizer_Zlib:
            try:
                text = zlib.decompress(body[8:]).decode()
            except (zlib.error, UnicodeDecodeError) as e:
                raise BundleFormatError(f"{path}: the HF tokenizer section does not decompress ({e})") from None
            tokenizer = HFTokenizer(f"{path}:HF_Tokenizer", json_text=text)
        elif kind == schema.AnySectionDataType.LlmMetadataProto:
            meta = llm_metadata_pb2.LlmMetadata()
            try:
                meta.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 - protobuf's DecodeError
                raise BundleFormatError(f"{path}: LlmMetadata does not parse ({e})") from None
    missing = [
        n for n, v in (("prefill/decode model", tflite), ("tokenizer", tokenizer), ("LlmMetadata", meta)) if v is None
    ]
    if missing:
        raise BundleFormatError(f"{path}: the bundle has no {', no '.join(missing)} section")
    system = header.SystemMetadata()
    strings = _string_items(schema, system.EntriesLength(), system.Entries) if system else {}

    def token(union) -> str | None:
        if union.HasField("token_str"):
            return union.token_str
        ids = list(union.token_ids.ids)
        return tokenizer.decode(ids) if len(ids) > 1 else (tokenizer.id_to_piece(ids[0]) if ids else None)

    t = meta.prompt_templates
    affixes = PromptTemplate(
        t.user.prefix, t.user.suffix, t.model.prefix, t.model.suffix, t.system.prefix, t.system.suffix
    )
    return BundleContents(
        path=path,
        model_span=tflite,
        tokenizer=tokenizer,
        start_token=token(meta.start_token) if meta.HasField("start_token") else None,
        stop_tokens=tuple(s for s in (token(u) for u in meta.stop_tokens) if s),
        affixes=affixes,
        chat_template=ChatTemplate(meta.jinja_prompt_template, f"{path}:LlmMetadata.jinja_prompt_template")
        if meta.jinja_prompt_template
        else None,
        self_test=_self_test(strings[SELF_TEST_KEY], path) if SELF_TEST_KEY in strings else None,
        notes=_notes(strings[NOTES_KEY], path) if NOTES_KEY in strings else {},
        sections=sections,
    )
