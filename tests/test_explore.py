"""`edge-models explore`: the summary of a converted file, Model Explorer overlays, and the server that shows them."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import load_for_spec, random_model
from edge_models.testing import tiny_checkpoint, train_sentencepiece
from edge_models.tflite.parts import CACHE, EMBEDDING, HEAD, block_part, op_parts
from edge_models.tflite.reading import flat_model, mapped
from edge_models.tflite.summary import format_summary, summarize
from edge_models.tools import overlays

pytestmark = pytest.mark.slow  # every test here reads one converted model

SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32)
# Three schemes in one file: int4 blocks, fp16 behind DEQUANTIZE, and the default int8 elsewhere.
RECIPE = "attention=int4-block32,feedforward=fp16"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(the .tflite, its checkpoint, the PyTorch model) for the generic Llama spec with a SentencePiece tokenizer."""
    root = tmp_path_factory.mktemp("explore")
    spec = registry().get("llama")
    checkpoint = tiny_checkpoint(spec, root / "ckpt")
    train_sentencepiece(checkpoint / "tokenizer.model", vocab_size=256)
    model = load_for_spec(spec, checkpoint)
    path = convert(model, root / "m.tflite", SETTINGS, RECIPE, progress=None).path
    return path, checkpoint, model


def _layer_shapes(model) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(attention projections, feed-forward projections) as [out, in], every layer's."""
    matrices = [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.dim() == 2]
    attention = [shape for n, shape in matrices if ".attn." in n]
    feedforward = [shape for n, shape in matrices if ".mlp." in n]
    assert len(attention) == 4 * model.config.num_layers and len(feedforward) == 3 * model.config.num_layers
    return attention, feedforward


def test_summary_counts_each_scheme_and_its_bytes(converted):
    path, _, model = converted
    with mapped(path) as data:
        summary = summarize(data)
    attention, feedforward = _layer_shapes(model)
    int4 = summary.weights["int4 block32"]
    # int4 data: half a byte per weight; scales: one float16 per block of 32
    assert int4 == [len(attention), sum(r * c // 2 + r * (c // 32) * 2 for r, c in attention)]
    fp16 = summary.weights["fp16 (dequantized at load)"]
    assert fp16 == [len(feedforward), sum(2 * r * c for r, c in feedforward)]
    assert [s.name for s in summary.signatures] == ["prefill_8", "decode"]
    with mapped(path) as data:
        flat = flat_model(data)
        for s in summary.signatures:
            assert sum(s.operators.values()) == flat.Subgraphs(s.subgraph).OperatorsLength()
    decode = summary.signatures[1]
    assert decode.operators["DEQUANTIZE"] == len(feedforward)  # each fp16 weight behind one DEQUANTIZE
    assert decode.inputs["tokens"] == "int32[1,1]"
    assert summary.warnings == []
    gpu = summary.gpu_outside()["decode"]
    assert {"EMBEDDING_LOOKUP", "DYNAMIC_UPDATE_SLICE"} <= set(gpu) and "FULLY_CONNECTED" not in gpu
    text = format_summary(summary, "m.tflite")
    assert "int4 block32" in text and "nothing a LiteRT CPU runtime is known to refuse" in text


def test_summary_reports_what_a_runtime_may_not_run(converted, tmp_path):
    """A custom op, a StableHLO op past the builtin kernels and a dynamic input, written into a copy of the file."""
    from ai_edge_litert import schema_py_generated as schema

    from edge_models.tflite.operator_codes import builtin_code
    from edge_models.tflite.packing import pack_model

    path = converted[0]
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    custom = schema.OperatorCodeT()
    custom.builtinCode = custom.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    custom.customCode = b"odml.update_kv_cache"
    model.operatorCodes += [custom, builtin_code(schema.BuiltinOperator.STABLEHLO_SCATTER)]
    decode = next(s for s in model.signatureDefs if s.signatureKey == b"decode")
    graph = model.subgraphs[decode.subgraphIndex]
    graph.operators[0].opcodeIndex = len(model.operatorCodes) - 2
    graph.operators[1].opcodeIndex = len(model.operatorCodes) - 1
    tokens = next(e.tensorIndex for e in decode.inputs if e.name == b"tokens")
    graph.tensors[tokens].shapeSignature = [1, -1]
    # Only the flatbuffer is read (buffer sizes, not their data): the offsets may point anywhere.
    (tmp_path / "odd.tflite").write_bytes(pack_model(model))
    with mapped(tmp_path / "odd.tflite") as data:
        summary = summarize(data)
    decode_summary = next(s for s in summary.signatures if s.name == "decode")
    assert decode_summary.custom == {"odml.update_kv_cache": 1}
    warnings = "\n".join(summary.warnings)
    assert "decode: custom operators odml.update_kv_cache" in warnings
    assert "STABLEHLO_SCATTER" in warnings
    assert "dynamic shapes on tokens" in warnings
    assert "prefill_8" not in warnings


def test_summary_of_a_bundle_is_its_model_s(converted, run, tmp_path):
    from edge_models_bundler.api import bundle_model

    path, checkpoint, _ = converted
    task = bundle_model(tmp_path / "m.task", path, checkpoint=checkpoint, model="llama", self_test=False)
    of_bundle = run("explore", task, "--summary", "--json")
    of_file = run("explore", path, "--summary", "--json")
    assert of_bundle.exit_code == 0, of_bundle.output
    assert json.loads(of_bundle.output) == json.loads(of_file.output)
    assert run("explore", path, "--json").exit_code != 0  # --json alone opens nothing


def test_summary_and_overlays_do_not_import_torch(converted):
    """The runtime-light rule: looking at a file needs the flatbuffer reader, not the converter."""
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from edge_models.cli import cli\n"
        "from edge_models.tflite.reading import mapped\n"
        "from edge_models.tools import overlays\n"
        f"result = CliRunner().invoke(cli, ['explore', {str(converted[0])!r}, '--summary'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"overlays.quantization_overlay(mapped({str(converted[0])!r}))\n"
        "heavy = sorted(m for m in ('torch', 'litert_torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_quantization_overlay_marks_each_weight_s_bits(converted):
    path, _, model = converted
    attention, feedforward = _layer_shapes(model)
    with mapped(path) as data:
        overlay = overlays.quantization_overlay(data)
        labels = overlays.op_labels(data, "decode")
    decode = {int(k): v["value"] for k, v in overlay["decode"]["results"].items()}
    assert set(overlay) == {"prefill_8", "decode"}
    int4_ops = [o for o, bits in decode.items() if bits == 4]
    assert len(int4_ops) == len(attention) and {labels[o] for o in int4_ops} == {"FULLY_CONNECTED"}
    fp16 = [labels[o] for o, bits in decode.items() if bits == 16]
    # each fp16 weight: its DEQUANTIZE and the FULLY_CONNECTED it feeds
    assert sorted(fp16) == sorted(["DEQUANTIZE", "FULLY_CONNECTED"] * len(feedforward))


def test_debug_overlay_shows_a_corrupted_block_as_the_worst_node(tmp_path):
    from edge_models.tools.debug import compare_blocks

    model = random_model(registry().get("gemma3-270m").tiny_config, seed=1)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.layers[1].mlp.down_proj.weight.mul_(-3.0)
    path = convert(broken, tmp_path / "broken.tflite", SETTINGS, "fp32", progress=None).path
    rows = compare_blocks(path, model, list(range(3, 10)))
    with mapped(path) as data:
        found = overlays.debug_overlays(data, rows)
        parts = op_parts(flat_model(data), 1)  # decode's subgraph
    growth = {int(k): v["value"] for k, v in found["error growth (x previous block)"]["decode"]["results"].items()}
    worst = max(growth.values())
    assert {parts[o] for o, v in growth.items() if v == worst} == {block_part(1)}
    relative = found["relative error vs PyTorch"]["decode"]["results"]
    assert any(parts[int(k)] == HEAD for k in relative)  # the logits' error on the head


def test_parts_cover_every_op(converted):
    path, _, model = converted
    config = model.config
    with mapped(path) as data:
        parts = op_parts(flat_model(data), 1)
    assert parts[0] == EMBEDDING and parts[-1] == HEAD
    assert {block_part(i) for i in range(config.num_layers)} <= set(parts)
    labels = overlays.op_labels(path.read_bytes(), "decode")
    assert [labels[o] for o, p in enumerate(parts) if p == CACHE] == ["DYNAMIC_UPDATE_SLICE"] * 2 * config.num_layers


def _get(url: str, data: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_model_explorer_serves_every_signature_and_the_overlays(converted, tmp_path):
    pytest.importorskip("model_explorer", reason="the explore extra (ai-edge-model-explorer) is not installed")
    from edge_models.tools.explore import free_port

    path = converted[0]
    # A profile's JSON as `edge-models profile --json` writes it (times made up: only their transport is tested).
    profile = {"signatures": [{"signature": "decode", "parts": [{"part": "block 0", "ms": 1.25}]}]}
    (tmp_path / "profile.json").write_text(json.dumps(profile))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "edge_models.cli", "explore", str(path), "--no-browser", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--profile", str(tmp_path / "profile.json")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/check_health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        # What the web app posts to convert the model it was given in its URL.
        convert_command = {
            "cmdId": "convert",
            "extensionId": "builtin_tflite_flatbuffer",
            "modelPath": str(path),
            "settings": {},
            "deleteAfterConversion": False,
        }
        graphs = _get(f"{base}/apipost/v1/send_command", json.dumps(convert_command).encode())
        served = [g for collection in graphs["graphCollections"] for g in collection["graphs"]]
        assert [g["id"] for g in served] == ["prefill_8", "decode"]
        decode_nodes = {n["id"]: n["label"] for n in next(g for g in served if g["id"] == "decode")["nodes"]}

        # the overlay asked for first, the weights' bits always
        times = json.loads(_get(f"{base}/api/v1/load_node_data?node_data_index=0")["content"])
        bits = json.loads(_get(f"{base}/api/v1/load_node_data?node_data_index=1")["content"])
        assert set(bits) == {"prefill_8", "decode"}
        four = [k for k, v in bits["decode"]["results"].items() if v["value"] == 4]
        assert four and {decode_nodes[k] for k in four} == {"fully_connected"}
        assert set(times) == {"decode"}
        with mapped(path) as data:
            block0 = [str(o) for o, p in enumerate(op_parts(flat_model(data), 1)) if p == block_part(0)]
        assert sorted(times["decode"]["results"]) == sorted(block0)
        assert {v["value"] for v in times["decode"]["results"].values()} == {1.25}
    finally:
        server.terminate()
        server.wait(timeout=30)
