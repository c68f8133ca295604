"""Weights over one chunk (Gemma 4's per-layer table) are read from the checkpoint and encoded a block of rows at a
time: the bytes must be exactly those of encoding the whole tensor, from a fraction of the memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_models.quantize import row_chunks
from edge_models.quantize.formats import WeightFormat, encode
from edge_models.quantize.row_chunks import RowRanges, encode_in_chunks

FORMATS = {
    "float32": WeightFormat("float32"),
    "float16": WeightFormat("float16", dequantize=True),
    "int8": WeightFormat("int8"),
    "int8-weight": WeightFormat("int8", dequantize=True),
    "int4-block32": WeightFormat("int4", block_size=32),
}


def _table(rows: int = 37, cols: int = 64) -> np.ndarray:
    table = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    table[5] = 0.0  # an all-zero row: scale floored (int8) or zero (int4)
    table[9, :32] = 0.0  # an all-zero int4 block
    return table


def _joined(encoded) -> bytes:
    return b"".join(memoryview(piece).tobytes() for piece in encoded.data)


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("lazy", [False, True])
def test_chunked_encoding_is_byte_identical_to_the_whole_tensor(name, lazy, monkeypatch):
    fmt, table = FORMATS[name], _table()
    whole = encode(table, fmt)
    # 3 rows a chunk: 37 rows end on a part chunk.
    monkeypatch.setattr(row_chunks, "ROW_CHUNK_BYTES", 3 * 64 * 4)
    source = RowRanges(table.shape, lambda a, b: table[a:b].copy()) if lazy else table
    chunked = encode_in_chunks(source, fmt)
    assert _joined(chunked) == whole.data.tobytes()
    # The scales are complete once the data has been written.
    for scales in ("row_scales", "block_scales"):
        expected, got = getattr(whole, scales), getattr(chunked, scales)
        assert (expected is None) == (got is None)
        if expected is not None:
            assert expected.tobytes() == got.tobytes()
    assert [b.nbytes for b in whole.buffers()[1:]] == [b.nbytes for b in chunked.buffers()[1:]]


def test_row_ranges_slice_and_materialize_lazily():
    table = _table()
    asked: list[tuple[int, int]] = []

    def read(a: int, b: int) -> np.ndarray:
        asked.append((a, b))
        return table[a:b]

    ranges = RowRanges(table.shape, read)
    tail = ranges[10:]
    assert tail.shape == (27, 64) and not asked
    assert np.array_equal(tail.rows(2, 4), table[12:14]) and asked == [(12, 14)]
    assert np.array_equal(np.asarray(ranges[:10]), table[:10])
    with pytest.raises(IndexError):
        ranges.rows(30, 40)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_safetensors_rows_are_read_without_the_rest_of_the_tensor(dtype, tmp_path):
    from safetensors.torch import save_file

    from edge_models.loader.sources import SafetensorsSource

    table = torch.randn(37, 24).to(dtype)
    save_file({"before": torch.ones(3), "table": table}, tmp_path / "w.safetensors")
    source = SafetensorsSource(tmp_path / "w.safetensors")
    assert torch.equal(source.read_rows("table", 5, 12), table[5:12])
    assert torch.equal(source.read_rows("table", 36, 37), table[36:])
    assert source.read_rows("table", 4, 4).shape == (0, 24)


@pytest.mark.slow
def test_gemma4_file_is_the_same_when_every_weight_is_chunked(tmp_path, monkeypatch):
    """A tiny Gemma 4 from a bf16 checkpoint, converted with the chunk at its default (nothing is large) and at 1 KiB
    (every 2-D weight, the per-layer table included, read as `RowRanges` and written in pieces): the same file. One
    recipe stores three formats: int4 blocks (the table and the embedding among them), int8 rows and float16."""
    recipe = "default=int4-block32,attention=int8,feedforward=fp16"
    from edge_models import registry
    from edge_models.convert import ExportSettings, convert
    from edge_models.hf.config import read_config
    from edge_models.kinds.decoder import load_for_spec
    from edge_models.testing import build_reference, save_reference

    spec = registry().get("gemma4")
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class).to(torch.bfloat16), tmp_path / "c")
    settings = ExportSettings((8,), 32, decode_windows=(), prefill_windows=(), verify_lengths=())
    config = spec.config_from_hf(read_config(ckpt))
    paths = []
    for chunk in (row_chunks.ROW_CHUNK_BYTES, 1024):
        monkeypatch.setattr(row_chunks, "ROW_CHUNK_BYTES", chunk)
        model, read = load_for_spec(spec, ckpt, config, deferred=True)
        if chunk == 1024:
            assert isinstance(read("per_layer_embedding.table.weight"), RowRanges)
        paths.append(convert(model, tmp_path / f"{chunk}.tflite", settings, recipe, progress=None, weights=read).path)
    assert paths[0].read_bytes() == paths[1].read_bytes()


@pytest.mark.slow  # two GPTQ calibrations: ~17 s on this machine
def test_gemma4_calibration_reads_only_the_table_rows_of_its_tokens(tmp_path, monkeypatch):
    """GPTQ runs each block on its per-layer inputs; from a deferred checkpoint the table arrives as `RowRanges` and
    only the calibration tokens' rows are read (the rest stay unwritten zero pages): the same integers as
    calibrating the loaded model."""
    from edge_models import registry
    from edge_models.hf.config import read_config
    from edge_models.kinds.decoder import load_for_spec
    from edge_models.quantize import parse_recipe
    from edge_models.quantize.calibrate import calibrate
    from edge_models.testing import build_reference, save_reference

    spec = registry().get("gemma4")
    ckpt = save_reference(build_reference(spec.tiny_hf_config, spec.reference_class), tmp_path / "c")
    config = spec.config_from_hf(read_config(ckpt))
    windows = [[3, 4, 5, 9, 200, 201, 7], [9, 9, 120, 255, 0]]
    recipe = parse_recipe("int8-gptq")
    loaded = calibrate(load_for_spec(spec, ckpt, config), windows, recipe, smooth=False).encoded
    monkeypatch.setattr(row_chunks, "ROW_CHUNK_BYTES", 1024)
    model, read = load_for_spec(spec, ckpt, config, deferred=True)
    asked: list[tuple[int, int]] = []

    def watched(param: str):
        weight = read(param)
        if param != "per_layer_embedding.table.weight":
            return weight
        assert isinstance(weight, RowRanges)
        return RowRanges(weight.shape, lambda a, b: asked.append((a, b)) or weight.rows(a, b))

    deferred = calibrate(model, windows, recipe, watched, smooth=False).encoded
    assert asked == [(0, 1), (3, 6), (7, 8), (9, 10), (120, 121), (200, 202), (255, 256)]
    assert loaded.keys() == deferred.keys()
    assert all(np.array_equal(loaded[k].data, deferred[k].data) for k in loaded)
    assert all(np.array_equal(loaded[k].row_scales, deferred[k].row_scales) for k in loaded)
