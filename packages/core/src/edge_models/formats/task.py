"""The MediaPipe `.task` bundle: entry names, the `LlmParameters` metadata codec and a safe reader.

Core owns the format so the desktop runtime can open bundles without the bundler package.
Facts about the format are in docs/file-formats.md; the field numbers below are those of
`odml/infra/genai/inference/proto/llm_params.proto` and `prompt_template.proto` as compiled into
mediapipe 0.10.35 (proto3, so the repeated enum is packed and empty scalars are not written).

Runtime-safe: the standard library only (no protobuf dependency).
"""

from __future__ import annotations

import itertools
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from edge_models.spec import PromptTemplate

# Entry names, in the order MediaPipe's bundler writes them.
TFLITE_ENTRY = "TF_LITE_PREFILL_DECODE"
TOKENIZER_ENTRY = "TOKENIZER_MODEL"
METADATA_ENTRY = "METADATA"
EMBEDDER_ENTRY = "TF_LITE_EMBEDDER"
PER_LAYER_EMBEDDER_ENTRY = "TF_LITE_PER_LAYER_EMBEDDER"
VISION_ENCODER_ENTRY = "TF_LITE_VISION_ENCODER"
VISION_ADAPTER_ENTRY = "TF_LITE_VISION_ADAPTER"
REQUIRED_ENTRIES = (TFLITE_ENTRY, TOKENIZER_ENTRY, METADATA_ENTRY)
OPTIONAL_ENTRIES = (EMBEDDER_ENTRY, PER_LAYER_EMBEDDER_ENTRY, VISION_ENCODER_ENTRY, VISION_ADAPTER_ENTRY)
KNOWN_ENTRIES = REQUIRED_ENTRIES + OPTIONAL_ENTRIES

# MediaPipe memory-maps entries, so they are stored (not compressed) at 4-byte aligned offsets.
ALIGNMENT = 4

# LlmParameters.InputOutputNormalization
NORMALIZATION_UNKNOWN = 0
NORMALIZATION_BYTES_TO_UNICODE = 1


class TaskFormatError(ValueError):
    """A bundle or metadata message that cannot be read; the message says what is wrong."""


# --------------------------------------------------------------------------- protobuf wire format

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    if value < 0:  # int32 negatives are sign-extended to 10 bytes, as protobuf does
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _str_field(number: int, text: str) -> bytes:
    return _len_field(number, text.encode("utf-8"))


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TaskFormatError("metadata: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise TaskFormatError("metadata: varint longer than 10 bytes")


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes, bytes]]:
    """(number, wire type, value, raw bytes of the whole field) for each field of a message."""
    out = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise TaskFormatError("metadata: field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise TaskFormatError(f"metadata: field {number} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (_I64, _I32):
            width = 8 if wire == _I64 else 4
            if pos + width > len(buf):
                raise TaskFormatError(f"metadata: field {number} runs past the end of the message")
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise TaskFormatError(f"metadata: field {number} has unsupported wire type {wire}")
        out.append((number, wire, value, buf[start:pos]))
    return out


def _text(number: int, wire: int, value: int | bytes) -> str:
    if wire != _LEN:
        raise TaskFormatError(f"metadata: field {number} should be a string")
    try:
        return value.decode("utf-8")  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise TaskFormatError(f"metadata: field {number} is not valid UTF-8") from None


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# --------------------------------------------------------------------------- LlmParameters

# LlmParameters field numbers.
F_TRANSFORMER_PARAMETERS = 1
F_VOCAB_SIZE = 2
F_START_TOKEN_ID = 4
F_STOP_TOKENS = 5
F_START_TOKEN = 6
F_NORMALIZATIONS = 7
F_PROMPT_TEMPLATE = 8  # deprecated single template: {1 session_prefix, 2 prompt_prefix, 3 prompt_suffix}
F_USER_ROLE_TOKEN = 11
F_SYSTEM_ROLE_TOKEN = 12
F_MODEL_ROLE_TOKEN = 13
F_END_ROLE_TOKEN = 14
F_PROMPT_TEMPLATES = 17  # {1 user_template, 2 model_template, 3 system_template}, each a PromptTemplate
# PromptTemplate field numbers.
PT_SESSION_PREFIX, PT_PREFIX, PT_SUFFIX = 1, 2, 3


@dataclass(frozen=True)
class LlmParams:
    """What a `.task`'s METADATA says about the model and its chat format.

    `prompt_template` holds the per-role templates (field 17); the deprecated single template
    (field 8) is derived from it on encoding exactly as MediaPipe's bundler does, so older
    runtimes see the same prompt. `system_prompt` is that template's `session_prefix`.
    """

    start_token: str | None = None
    stop_tokens: tuple[str, ...] = ()
    # start_token and start_token_id are one protobuf oneof: set at most one.
    start_token_id: int | None = None
    vocab_size: int = 0
    input_output_normalizations: tuple[int, ...] = ()
    prompt_template: PromptTemplate = field(default_factory=PromptTemplate)
    system_prompt: str = ""
    user_role_token: str | None = None
    system_role_token: str | None = None
    model_role_token: str | None = None
    end_role_token: str | None = None
    # Fields this codec does not model (transformer parameters, encoders, ...), kept verbatim
    # as (field number, encoded field) so re-encoding someone else's bundle loses nothing.
    unknown_fields: tuple[tuple[int, bytes], ...] = ()

    @property
    def bytes_to_unicode(self) -> bool:
        return NORMALIZATION_BYTES_TO_UNICODE in self.input_output_normalizations

    def replace(self, **changes) -> LlmParams:
        return replace(self, **changes)


def _affixes(prefix: str, suffix: str, session_prefix: str = "") -> bytes:
    out = b""
    if session_prefix:
        out += _str_field(PT_SESSION_PREFIX, session_prefix)
    if prefix:
        out += _str_field(PT_PREFIX, prefix)
    if suffix:
        out += _str_field(PT_SUFFIX, suffix)
    return out


def _legacy_template(p: LlmParams) -> bytes | None:
    """The deprecated single template, filled the way mediapipe 0.10.35's bundler fills it.

    Observed rule: present when there is a system prompt or a user affix; the model prefix is
    appended to the user suffix only when a user suffix exists.
    """
    t = p.prompt_template
    if not (p.system_prompt or t.user_prefix or t.user_suffix):
        return None
    suffix = t.user_suffix + t.model_prefix if t.user_suffix else ""
    return _affixes(t.user_prefix, suffix, p.system_prompt)


def _role_templates(t: PromptTemplate) -> bytes | None:
    out = b""
    # A role's message is present exactly when one of its affixes is non-empty (as the reference).
    for number, (prefix, suffix) in enumerate(
        ((t.user_prefix, t.user_suffix), (t.model_prefix, t.model_suffix), (t.system_prefix, t.system_suffix)),
        start=1,
    ):
        if prefix or suffix:
            out += _len_field(number, _affixes(prefix, suffix))
    return out or None


def encode_llm_params(params: LlmParams) -> bytes:
    """Serialize as `odml.infra.proto.LlmParameters`, byte-identical to MediaPipe's bundler."""
    if params.start_token is not None and params.start_token_id is not None:
        raise TaskFormatError("start_token and start_token_id are one oneof: set only one")
    parts: dict[int, list[bytes]] = {}

    def put(number: int, data: bytes) -> None:
        parts.setdefault(number, []).append(data)

    if params.vocab_size:
        put(F_VOCAB_SIZE, _tag(F_VOCAB_SIZE, _VARINT) + _varint(params.vocab_size))
    if params.start_token_id is not None:  # oneof member: written even when 0
        put(F_START_TOKEN_ID, _tag(F_START_TOKEN_ID, _VARINT) + _varint(params.start_token_id))
    for token in params.stop_tokens:
        put(F_STOP_TOKENS, _str_field(F_STOP_TOKENS, token))
    if params.start_token is not None:
        put(F_START_TOKEN, _str_field(F_START_TOKEN, params.start_token))
    if params.input_output_normalizations:  # proto3 repeated enum: packed
        packed = b"".join(_varint(v) for v in params.input_output_normalizations)
        put(F_NORMALIZATIONS, _len_field(F_NORMALIZATIONS, packed))
    legacy = _legacy_template(params)
    if legacy is not None:
        put(F_PROMPT_TEMPLATE, _len_field(F_PROMPT_TEMPLATE, legacy))
    for number, token in (
        (F_USER_ROLE_TOKEN, params.user_role_token),
        (F_SYSTEM_ROLE_TOKEN, params.system_role_token),
        (F_MODEL_ROLE_TOKEN, params.model_role_token),
        (F_END_ROLE_TOKEN, params.end_role_token),
    ):
        if token is not None:  # proto3 `optional`: present even when empty
            put(number, _str_field(number, token))
    roles = _role_templates(params.prompt_template)
    if roles is not None:
        put(F_PROMPT_TEMPLATES, _len_field(F_PROMPT_TEMPLATES, roles))
    for number, raw in params.unknown_fields:
        put(number, raw)
    # protobuf C++ serializes known fields in field-number order.
    return b"".join(b"".join(parts[n]) for n in sorted(parts))


def _decode_affixes(buf: bytes) -> tuple[str, str, str]:
    session = prefix = suffix = ""
    for number, wire, value, _ in _fields(buf):
        if number == PT_SESSION_PREFIX:
            session = _text(number, wire, value)
        elif number == PT_PREFIX:
            prefix = _text(number, wire, value)
        elif number == PT_SUFFIX:
            suffix = _text(number, wire, value)
    return session, prefix, suffix


def decode_llm_params(data: bytes) -> LlmParams:
    """Parse an `LlmParameters` message; accepts packed and unpacked normalizations."""
    values: dict[str, object] = {}
    stops: list[str] = []
    norms: list[int] = []
    unknown: list[tuple[int, bytes]] = []
    legacy: tuple[str, str, str] | None = None
    roles: dict[int, tuple[str, str]] = {}
    for number, wire, value, raw in _fields(bytes(data)):
        if number == F_VOCAB_SIZE and wire == _VARINT:
            values["vocab_size"] = _int32(value)  # type: ignore[arg-type]
        elif number == F_START_TOKEN_ID and wire == _VARINT:
            values["start_token_id"] = _int32(value)  # type: ignore[arg-type]
            values.pop("start_token", None)  # oneof: the last one read wins
        elif number == F_START_TOKEN:
            values["start_token"] = _text(number, wire, value)
            values.pop("start_token_id", None)
        elif number == F_STOP_TOKENS:
            stops.append(_text(number, wire, value))
        elif number == F_NORMALIZATIONS and wire == _VARINT:
            norms.append(value)  # type: ignore[arg-type]
        elif number == F_NORMALIZATIONS and wire == _LEN:
            pos = 0
            while pos < len(value):  # type: ignore[arg-type]
                v, pos = _read_varint(value, pos)  # type: ignore[arg-type]
                norms.append(v)
        elif number == F_PROMPT_TEMPLATE and wire == _LEN:
            legacy = _decode_affixes(value)  # type: ignore[arg-type]
        elif number in (F_USER_ROLE_TOKEN, F_SYSTEM_ROLE_TOKEN, F_MODEL_ROLE_TOKEN, F_END_ROLE_TOKEN):
            name = {11: "user_role_token", 12: "system_role_token", 13: "model_role_token", 14: "end_role_token"}
            values[name[number]] = _text(number, wire, value)
        elif number == F_PROMPT_TEMPLATES and wire == _LEN:
            for role, rwire, rvalue, _ in _fields(value):  # type: ignore[arg-type]
                if role in (1, 2, 3) and rwire == _LEN:
                    _, prefix, suffix = _decode_affixes(rvalue)  # type: ignore[arg-type]
                    roles[role] = (prefix, suffix)
        else:
            unknown.append((number, raw))
    if roles:
        (up, us), (mp, ms), (sp, ss) = (roles.get(r, ("", "")) for r in (1, 2, 3))
        template = PromptTemplate(up, us, mp, ms, sp, ss)
    elif legacy is not None:
        # Bundles from older bundlers carry only the single template; its suffix already holds
        # the model prefix, so the user suffix takes it whole.
        template = PromptTemplate(user_prefix=legacy[1], user_suffix=legacy[2])
    else:
        template = PromptTemplate()
    return LlmParams(
        stop_tokens=tuple(stops),
        input_output_normalizations=tuple(norms),
        prompt_template=template,
        system_prompt=legacy[0] if legacy else "",
        unknown_fields=tuple(unknown),
        **values,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- safe reader

MAX_ENTRIES = 64
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIG = b"PK\x03\x04"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    size: int
    offset: int  # where the entry's bytes start in the file
    crc: int

    @property
    def aligned(self) -> bool:
        return self.offset % ALIGNMENT == 0


def _check_name(name: str) -> str | None:
    """Why `name` is unsafe as a bundle entry name, or None. Entries are flat names, never paths."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "NUL byte in name"
    if "/" in name or "\\" in name:
        return "path separator in name (bundle entries are flat; possible path traversal)"
    if name in (".", "..") or ":" in name:
        return "not a plain file name (possible path traversal)"
    return None


class TaskBundle:
    """A validated, read-only view of a `.task` file. Entry bytes are read on demand."""

    def __init__(self, path: Path, entries: dict[str, TaskEntry], max_entry_bytes: int) -> None:
        self.path = path
        self.entries = entries
        self._max = max_entry_bytes

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str) -> bytes:
        """The bytes of entry `name`, checked against the archive's CRC-32."""
        entry = self.entries.get(name)
        if entry is None:
            raise TaskFormatError(f"{self.path}: no entry {name!r} (entries: {', '.join(self.entries)})")
        with open(self.path, "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.size)
        if len(data) != entry.size:
            raise TaskFormatError(f"{self.path}: entry {name!r} is truncated ({len(data)} of {entry.size} bytes)")
        if zlib.crc32(data) != entry.crc:
            raise TaskFormatError(f"{self.path}: entry {name!r} is corrupt (CRC-32 mismatch)")
        return data

    @cached_property
    def metadata(self) -> bytes:
        return self.read(METADATA_ENTRY)

    @cached_property
    def params(self) -> LlmParams:
        try:
            return decode_llm_params(self.metadata)
        except TaskFormatError as e:
            raise TaskFormatError(f"{self.path}: METADATA is not an LlmParameters message ({e})") from None

    @property
    def tflite(self) -> bytes:
        return self.read(TFLITE_ENTRY)

    @property
    def tokenizer_model(self) -> bytes:
        return self.read(TOKENIZER_ENTRY)

    def extract(self, name: str, dest: str | Path) -> Path:
        """Write entry `name` to the file `dest` (the caller chooses the path, never the archive)."""
        dest = Path(dest)
        dest.write_bytes(self.read(name))
        return dest


def read_task(path: str | Path, *, max_entry_bytes: int = 64 << 30) -> TaskBundle:
    """Open a `.task` bundle safely.

    Rejects a missing, truncated or non-zip file, entry names that are paths, compressed or
    encrypted entries (MediaPipe memory-maps stored entries, and refusing compression also rules
    out decompression bombs), entries that overlap or run past the central directory, duplicate
    names, and a METADATA that is not an `LlmParameters` message.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"{path}: no such file")
    file_size = path.stat().st_size
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            infos = zf.infolist()
            cd_start = _central_directory_start(zf, file_size)
            entries = _validate_entries(path, f, infos, cd_start, max_entry_bytes)
    except zipfile.BadZipFile as e:
        raise TaskFormatError(
            f"{path}: not a .task bundle: not a readable zip archive ({e}); truncated download?"
        ) from None
    except (OSError, EOFError, struct.error) as e:
        raise TaskFormatError(f"{path}: not a .task bundle: unreadable zip structure ({e})") from None
    missing = [n for n in REQUIRED_ENTRIES if n not in entries]
    if missing:
        raise TaskFormatError(
            f"{path}: not a MediaPipe LLM bundle: missing entries {missing} (found {list(entries) or 'none'})"
        )
    bundle = TaskBundle(path, entries, max_entry_bytes)
    bundle.params  # noqa: B018 - decode now so a bad METADATA fails at open, not mid-generation
    return bundle


def _central_directory_start(zf: zipfile.ZipFile, file_size: int) -> int:
    # zipfile records where the central directory begins; entries' data must end before it.
    start = getattr(zf, "start_dir", None)
    return int(start) if isinstance(start, int) else file_size


def _validate_entries(path: Path, f, infos: list[zipfile.ZipInfo], cd_start: int, max_entry_bytes: int):
    if len(infos) > MAX_ENTRIES:
        raise TaskFormatError(f"{path}: {len(infos)} entries, more than the {MAX_ENTRIES} a bundle may hold")
    entries: dict[str, TaskEntry] = {}
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        name = info.filename
        why = _check_name(name)
        if why:
            raise TaskFormatError(f"{path}: unsafe entry name {name!r}: {why}")
        if name in entries:
            raise TaskFormatError(f"{path}: entry {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise TaskFormatError(f"{path}: entry {name!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise TaskFormatError(
                f"{path}: entry {name!r} is compressed (method {info.compress_type}); .task entries must be "
                "stored uncompressed, as MediaPipe memory-maps them"
            )
        if info.compress_size != info.file_size:
            raise TaskFormatError(f"{path}: entry {name!r}: stored size {info.compress_size} != size {info.file_size}")
        if info.file_size > max_entry_bytes:
            raise TaskFormatError(f"{path}: entry {name!r} declares {info.file_size} bytes, over the limit")
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise TaskFormatError(f"{path}: entry {name!r}: local header past the end of the file (truncated?)")
        sig, *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        if sig != _LOCAL_SIG:
            raise TaskFormatError(f"{path}: entry {name!r}: bad local header signature (corrupt or truncated)")
        local_name = f.read(name_len)
        if local_name not in (name.encode("utf-8"), name.encode("cp437", "replace")):
            raise TaskFormatError(f"{path}: entry {name!r}: local header names {local_name!r} (spoofed entry)")
        data_start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        data_end = data_start + info.file_size
        if data_end > cd_start:
            raise TaskFormatError(f"{path}: entry {name!r} runs past the central directory (truncated or crafted)")
        spans.append((info.header_offset, data_end, name))
        entries[name] = TaskEntry(name=name, size=info.file_size, offset=data_start, crc=info.CRC)
    spans.sort()
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        if start < end:
            raise TaskFormatError(f"{path}: entries {a!r} and {b!r} overlap (crafted archive)")
    return entries
