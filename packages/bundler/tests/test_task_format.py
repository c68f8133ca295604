"""Core's .task format: the LlmParameters codec and the safe reader, against hostile files."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
from edge_models.formats.task import (
    METADATA_ENTRY,
    TFLITE_ENTRY,
    TOKENIZER_ENTRY,
    LlmParams,
    TaskFormatError,
    decode_llm_params,
    encode_llm_params,
    read_task,
)
from edge_models.spec import PromptTemplate

META = encode_llm_params(LlmParams(start_token="<s>", stop_tokens=("</s>",)))


def _zip(path: Path, entries: list[tuple[str, bytes]], compress=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _good_entries() -> list[tuple[str, bytes]]:
    return [(TFLITE_ENTRY, b"model" * 10), (TOKENIZER_ENTRY, b"tok" * 10), (METADATA_ENTRY, META)]


# ----------------------------------------------------------------------------- codec


def test_codec_round_trip_every_field():
    p = LlmParams(
        start_token="<bos>",
        stop_tokens=("<eos>", "<end_of_turn>"),
        vocab_size=262144,
        input_output_normalizations=(1,),
        system_prompt="sys",
        prompt_template=PromptTemplate("U", "u", "M", "m", "S", "s"),
        user_role_token="user",
        system_role_token="",
        model_role_token="model",
        end_role_token="end",
    )
    assert decode_llm_params(encode_llm_params(p)) == p


def test_start_token_id_is_a_oneof_with_start_token():
    p = LlmParams(start_token_id=0, stop_tokens=("x",))
    data = encode_llm_params(p)
    assert data.startswith(b"\x20\x00")  # field 4 varint 0: a oneof member is written even when zero
    assert decode_llm_params(data).start_token_id == 0
    with pytest.raises(TaskFormatError, match="oneof"):
        encode_llm_params(LlmParams(start_token="<s>", start_token_id=1))


def test_normalizations_packed_and_unpacked_both_decode():
    packed = b"\x3a\x02\x01\x00"  # field 7, length 2: [1, 0]
    unpacked = b"\x38\x01\x38\x00"  # field 7 varint twice
    assert decode_llm_params(packed).input_output_normalizations == (1, 0)
    assert decode_llm_params(unpacked).input_output_normalizations == (1, 0)
    assert decode_llm_params(packed).bytes_to_unicode


def test_unknown_fields_survive_re_encoding():
    transformer = b"\x0a\x03\x08\x96\x01"  # field 1 (TransformerParameters) with a nested varint
    data = transformer + META
    p = decode_llm_params(data)
    assert p.unknown_fields == ((1, transformer),)
    assert encode_llm_params(p) == data


def test_legacy_only_template_is_read_as_the_user_template():
    legacy = b"\x42\x08\x0a\x02SP\x12\x02Pu"  # field 8 {session_prefix "SP", prompt_prefix "Pu"}
    p = decode_llm_params(legacy)
    assert p.system_prompt == "SP" and p.prompt_template.user_prefix == "Pu"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x2a\x10abc", "runs past the end"),
        (b"\x10", "truncated varint"),
        (b"\x2a\x02\xff\xfe", "not valid UTF-8"),
        (b"\x0b", "wire type 3"),
        (b"\x10" + b"\xff" * 11, "longer than 10 bytes"),
    ],
)
def test_malformed_metadata_is_a_clear_error(data, message):
    with pytest.raises(TaskFormatError, match=message):
        decode_llm_params(data)


# ----------------------------------------------------------------------------- reader


def test_reads_a_plain_zip_bundle(tmp_path):
    b = read_task(_zip(tmp_path / "ok.task", _good_entries()))
    assert b.tflite == b"model" * 10 and b.tokenizer_model == b"tok" * 10
    assert b.params.start_token == "<s>" and b.params.stop_tokens == ("</s>",)
    assert {e.size for e in b.entries.values()} == {50, 30, len(META)}
    with pytest.raises(TaskFormatError, match="no entry 'NOPE'"):
        b.read("NOPE")


def test_missing_file_and_non_zip(tmp_path):
    with pytest.raises(TaskFormatError, match="no such file"):
        read_task(tmp_path / "absent.task")
    (tmp_path / "text.task").write_text("hello, I am not a zip archive")
    with pytest.raises(TaskFormatError, match="not a readable zip archive"):
        read_task(tmp_path / "text.task")
    (tmp_path / "empty.task").write_bytes(b"")
    with pytest.raises(TaskFormatError, match="not a readable zip"):
        read_task(tmp_path / "empty.task")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.99])
def test_truncated_bundle(tmp_path, keep):
    data = _zip(tmp_path / "ok.task", _good_entries()).read_bytes()
    cut = tmp_path / "cut.task"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(TaskFormatError, match="not a .task bundle"):
        read_task(cut)


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/b", "..\\evil", "C:evil", ".."])
def test_path_traversal_names_are_rejected(tmp_path, name):
    path = _zip(tmp_path / "evil.task", _good_entries() + [(name, b"x")])
    with pytest.raises(TaskFormatError, match="unsafe entry name"):
        read_task(path)


def test_compressed_entries_are_rejected(tmp_path):
    # A deflated entry could be a decompression bomb; MediaPipe cannot memory-map it either.
    path = _zip(
        tmp_path / "bomb.task",
        _good_entries()[:2] + [(METADATA_ENTRY, META + b"\0" * 10_000_000)],
        compress=zipfile.ZIP_DEFLATED,
    )
    assert path.stat().st_size < 100_000
    with pytest.raises(TaskFormatError, match="compressed"):
        read_task(path)


def test_declared_size_over_the_limit_is_rejected(tmp_path):
    path = _zip(tmp_path / "big.task", _good_entries())
    with pytest.raises(TaskFormatError, match="over the limit"):
        read_task(path, max_entry_bytes=40)


def test_duplicate_entries_are_rejected(tmp_path):
    with pytest.warns(UserWarning):
        path = _zip(tmp_path / "dup.task", _good_entries() + [(METADATA_ENTRY, META)])
    with pytest.raises(TaskFormatError, match="appears twice"):
        read_task(path)


def test_missing_required_entries(tmp_path):
    path = _zip(tmp_path / "partial.task", _good_entries()[:2])
    with pytest.raises(TaskFormatError, match=r"missing entries \['METADATA'\]"):
        read_task(path)


def test_bad_metadata_fails_at_open(tmp_path):
    path = _zip(tmp_path / "meta.task", _good_entries()[:2] + [(METADATA_ENTRY, b"\x2a\x50")])
    with pytest.raises(TaskFormatError, match="METADATA is not an LlmParameters message"):
        read_task(path)


def test_corrupt_entry_data_fails_its_crc(tmp_path):
    path = _zip(tmp_path / "ok.task", _good_entries())
    data = bytearray(path.read_bytes())
    data[data.index(b"model") + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(TaskFormatError, match="CRC"):
        _ = read_task(path).tflite


def test_overlapping_entries_are_rejected(tmp_path):
    # Hide a complete local header for TOKENIZER_MODEL inside the model entry's data and point the
    # central directory at it: two entries sharing bytes, the trick behind overlapping zip bombs.
    tok = b"tok" * 10
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr(TOKENIZER_ENTRY, tok)
    inner_bytes = inner.getvalue()[: inner.getvalue().index(b"PK\x01\x02")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(TFLITE_ENTRY, inner_bytes)
        zf.writestr(TOKENIZER_ENTRY, tok)
        zf.writestr(METADATA_ENTRY, META)
    raw = bytearray(buf.getvalue())
    hidden = raw.index(inner_bytes)
    records = [i for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)]
    struct.pack_into("<L", raw, records[1] + 42, hidden)  # TOKENIZER_MODEL's local-header offset
    path = tmp_path / "overlap.task"
    path.write_bytes(bytes(raw))
    with pytest.raises(TaskFormatError, match="overlap"):
        read_task(path)


def test_spoofed_local_header_name(tmp_path):
    path = _zip(tmp_path / "spoof.task", _good_entries())
    raw = bytearray(path.read_bytes())
    first = raw.index(TFLITE_ENTRY.encode())  # the local header's copy of the name comes first
    raw[first : first + 7] = b"TF_EVIL"
    path.write_bytes(bytes(raw))
    with pytest.raises(TaskFormatError, match="spoofed|not a readable zip"):
        read_task(path)


def test_too_many_entries(tmp_path):
    path = _zip(tmp_path / "many.task", _good_entries() + [(f"E{i}", b"") for i in range(100)])
    with pytest.raises(TaskFormatError, match="more than the 64"):
        read_task(path)
