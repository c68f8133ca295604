"""LoRA: one converted base file with adapter inputs against `peft`'s PeftModel on the same weights, for every
registered decoder family (Gemma 2 and 3, Llama, Phi-2, Phi-3, Qwen 2 and 3, Mistral, and the layers with state of
LFM2 and Qwen3.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edge_models import registry
from edge_models.convert import ExportSettings, convert
from edge_models.kinds.decoder import load_for_spec
from edge_models.layers.lora import add_lora_slots, parse_targets
from edge_models.loader.peft_adapter import AdapterError, merge, pack, read_adapter, write_packed
from edge_models.runtime import LiteRTModel
from edge_models.testing import tiny_checkpoint
from edge_models.tflite.lora import AdapterFileError, read_adapter_file

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

RANK = 8
IDS = [3, 17, 42, 7, 99, 5, 23, 11]
SETTINGS = ExportSettings(prefill_lengths=(8,), kv_cache_len=32, prefill_logits=True, verify_lengths=())
# Per family: two adapters with different ranks and targets, named as the checkpoint names its projections.
ADAPTERS = {
    "llama": [(4, ["q_proj", "v_proj", "down_proj"]), (8, ["k_proj", "o_proj", "gate_proj", "up_proj"])],
    "gemma3-270m": [(2, ["q_proj", "o_proj"]), (8, ["v_proj", "up_proj", "down_proj"])],
    "phi-2": [(4, ["q_proj", "dense", "fc2"]), (6, ["k_proj", "v_proj", "fc1"])],
    "qwen3": [(3, ["q_proj", "k_proj"]), (8, ["gate_proj", "down_proj"])],
    "phi3": [(4, ["o_proj", "down_proj"]), (8, ["o_proj"])],  # fused qkv/gate_up: see the refusal test
    "qwen2": [(4, ["q_proj", "v_proj"]), (8, ["o_proj", "up_proj"])],  # q/k/v biases
    "mistral": [(8, ["k_proj", "down_proj"]), (2, ["q_proj", "gate_proj"])],
    "gemma2-2b": [(4, ["q_proj", "up_proj"]), (8, ["v_proj", "o_proj"])],  # soft-capping, sandwich norms
    # Short convolutions' projections; `out_proj` is also the attention layers' output projection in LFM2.
    "lfm2": [(4, ["in_proj", "q_proj"]), (8, ["out_proj", "w1"])],
    # Gated delta-net projections (attention layers use o_proj, so `out_proj` is the delta-net's alone).
    "qwen3.5": [(4, ["in_proj_qkv", "in_proj_z", "q_proj"]), (8, ["in_proj_a", "in_proj_b", "out_proj", "down_proj"])],
}


def _adapter(base, rank: int, targets: list[str], directory, seed: int):
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False)
    model = peft.get_peft_model(base, config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0.0, 0.05)
        logits = model(torch.tensor([IDS])).logits[0].numpy()
        greedy = model.generate(torch.tensor([IDS]), max_new_tokens=12, do_sample=False)[0, len(IDS) :].tolist()
    model.save_pretrained(directory)
    return model.unload(), logits, greedy  # unload: the plain base back, for the next adapter


def _ours(lite: LiteRTModel, steps: int = 12) -> tuple[np.ndarray, list[int]]:
    """Prefill logits of IDS, then greedy decoding from there."""
    lite.reset()
    prefill = lite._run("prefill_8", np.array([IDS], np.int32), np.arange(8, dtype=np.int32))["logits"][0]
    tokens, pos, token = [], len(IDS), int(prefill[-1].argmax())
    for _ in range(steps):
        tokens.append(token)
        token = int(lite.decode(token, pos).argmax())
        pos += 1
    return prefill, tokens


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.slow
def test_adapters_at_run_time_and_merged_match_peft(name, tmp_path):
    spec = registry().get(name)
    checkpoint = tiny_checkpoint(spec, tmp_path / "ck", seed=1)
    base = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(torch.tensor([IDS])).logits[0].numpy()
    references = []
    for k, (rank, targets) in enumerate(ADAPTERS[name]):
        base, logits, greedy = _adapter(base, rank, targets, tmp_path / f"adapter{k}", seed=k)
        # An adapter that changed nothing would make every comparison below vacuous.
        assert np.abs(logits - base_logits).max() > 1e-2, (name, k)
        references.append((tmp_path / f"adapter{k}", logits, greedy))

    model = load_for_spec(spec, checkpoint)
    add_lora_slots(model, RANK, parse_targets(None))
    lite = LiteRTModel(convert(model, tmp_path / "base.tflite", SETTINGS, "fp32", progress=None).path)
    # No adapter bound: the base model.
    prefill, _ = _ours(lite)
    assert np.abs(prefill - base_logits).max() <= 1e-4
    # Two adapters swapped on the same loaded file, each against its own PeftModel.
    for directory, logits, greedy in references * 2:
        lite.set_lora(pack(read_adapter(directory, spec.tensor_names, model.config.num_layers), lite.lora_spec))
        prefill, tokens = _ours(lite)
        assert np.abs(prefill - logits).max() <= 1e-4, (directory.name, np.abs(prefill - logits).max())
        assert tokens == greedy, directory.name
    lite.set_lora(None)
    assert np.abs(_ours(lite)[0] - base_logits).max() <= 1e-4

    # Merged before conversion: a file without LoRA inputs that computes the same.
    directory, logits, greedy = references[0]
    merged = load_for_spec(spec, checkpoint)
    merge(merged, read_adapter(directory, spec.tensor_names, merged.config.num_layers))
    plain = LiteRTModel(convert(merged, tmp_path / "merged.tflite", SETTINGS, "fp32", progress=None).path)
    assert not plain.lora_spec
    prefill, tokens = _ours(plain)
    assert np.abs(prefill - logits).max() <= 1e-4 and tokens == greedy


@pytest.fixture(scope="module")
def llama_file(tmp_path_factory):
    """A tiny Llama file with rank-4 slots on q_proj and v_proj only, and adapters to try against it."""
    root = tmp_path_factory.mktemp("lora")
    spec = registry().get("llama")
    checkpoint = tiny_checkpoint(spec, root / "ck", seed=2)
    model = load_for_spec(spec, checkpoint)
    add_lora_slots(model, 4, parse_targets("q_proj,v_proj"))
    path = convert(model, root / "m.tflite", SETTINGS, "fp32", progress=None).path
    base = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    for label, rank, targets in (("ok", 4, ["q_proj", "v_proj"]), ("big", 8, ["q_proj"]), ("mlp", 2, ["up_proj"])):
        base, _, _ = _adapter(base, rank, targets, root / label, seed=3)
    return spec, root, path


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        ("big", r"layers.0.attn.q_proj: adapter rank 8 exceeds the file's LoRA rank 4"),
        ("mlp", r"the file has no LoRA slot on layers.0.mlp.up_proj \(its targets: q_proj, v_proj\)"),
    ],
)
@pytest.mark.slow
def test_adapter_that_does_not_fit_is_refused_and_nothing_is_written(llama_file, adapter, message):
    from edge_models.cli import _add_builtin_groups, cli

    spec, root, path = llama_file
    lite = LiteRTModel(path)
    with pytest.raises(AdapterError, match=message):
        pack(read_adapter(root / adapter, spec.tensor_names, 2), lite.lora_spec)
    _add_builtin_groups()
    out = root / f"{adapter}.npz"
    result = CliRunner().invoke(
        cli, ["lora", "pack", str(root / adapter), "--base", str(path), "--model", "llama", "-o", str(out)]
    )
    assert result.exit_code != 0, result.output
    assert ("exceeds" if adapter == "big" else "no LoRA slot") in result.output, result.output
    assert not out.exists()


@pytest.mark.slow
def test_adapter_for_another_model_size_names_the_module_and_shape(llama_file, tmp_path):
    spec, root, path = llama_file
    adapter = read_adapter(root / "ok", spec.tensor_names, 2)
    module = next(iter(adapter.modules))
    a, b = adapter.modules[module]
    adapter.modules[module] = (torch.zeros(a.shape[0], a.shape[1] * 2), b)
    with pytest.raises(
        AdapterError, match=rf"{module}: adapter A \[4, {2 * a.shape[1]}\] .* expected A \[r, {a.shape[1]}\]"
    ):
        pack(adapter, LiteRTModel(path).lora_spec)


def test_fused_projection_adapters_and_unsupported_configs_are_named(tmp_path):
    import json

    spec = registry().get("phi3")
    checkpoint = tiny_checkpoint(spec, tmp_path / "ck")
    base = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    _adapter(base, 4, ["qkv_proj"], tmp_path / "fused", seed=0)
    with pytest.raises(AdapterError, match=r"'model.layers.0.self_attn.qkv_proj' is not a projection of this model"):
        read_adapter(tmp_path / "fused", spec.tensor_names, 2)
    config = json.loads((tmp_path / "fused" / "adapter_config.json").read_text())
    (tmp_path / "fused" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True, "bias": "all"}))
    with pytest.raises(AdapterError, match=r"use_dora = true .*; bias = 'all'"):
        read_adapter(tmp_path / "fused", spec.tensor_names, 2)


@pytest.mark.slow
def test_cli_convert_pack_and_generate_with_an_adapter(llama_file, tmp_path):
    from edge_models.cli import _add_builtin_groups, cli
    from edge_models.runtime import Generator, SamplerConfig
    from edge_models.testing import train_sentencepiece

    spec, root, _ = llama_file
    _add_builtin_groups()
    runner = CliRunner()
    out = tmp_path / "m.tflite"
    args = ["convert", "llama", "--checkpoint", str(root / "ck"), "-o", str(out), "--quantize", "int8"]
    result = runner.invoke(cli, [*args, "--lora-rank", "4", "--prefill", "8", "--kv-cache", "64"])
    assert result.exit_code == 0 and "LoRA inputs of rank 4" in result.output, result.output
    packed = tmp_path / "ok.bin"
    result = runner.invoke(
        cli, ["lora", "pack", str(root / "ok"), "--base", str(out), "--model", "llama", "-o", str(packed)]
    )
    assert result.exit_code == 0 and "rank 4" in result.output, result.output
    tokenizer = train_sentencepiece(tmp_path / "tokenizer.model")
    cmd = ["generate", str(out), "--model", "llama", "--prompt", "ka lo mi ne", "--max-tokens", "8", "--no-speculate"]
    with_adapter = runner.invoke(cli, [*cmd, "--lora", str(packed)])
    without = runner.invoke(cli, cmd)
    assert with_adapter.exit_code == 0 and without.exit_code == 0, with_adapter.output
    gen = Generator.open(out, tokenizer=tokenizer, model="llama")
    gen.model.set_lora(read_adapter_file(packed)[0])
    expected = gen.generate("ka lo mi ne", max_tokens=8, sampler=SamplerConfig())
    assert with_adapter.output.startswith(expected)


def test_adapter_file_round_trips_in_litert_lms_layout(tmp_path):
    matrices = {
        "lora_atten_q_a_prime_weight_0": np.arange(6, dtype=np.float32).reshape(3, 2),
        "lora_atten_q_b_prime_weight_0": np.arange(8, dtype=np.float32).reshape(2, 4),
    }
    path = write_packed(matrices, tmp_path / "a.bin", "somewhere")
    back, rank = read_adapter_file(path)
    assert rank == 2 and list(back) == list(matrices)
    assert all(np.array_equal(back[n], matrices[n]) for n in matrices)
    # LiteRT-LM memory-maps each tensor in whole pages: the file ends on one.
    assert path.stat().st_size % 4096 == 0
    (tmp_path / "bad.bin").write_text("not an adapter")
    with pytest.raises(AdapterFileError, match="is not a LoRA adapter file"):
        read_adapter_file(tmp_path / "bad.bin")


@pytest.mark.slow
def test_merged_bundle_records_the_adapter(llama_file, tmp_path):
    from edge_models.cli import _load_plugin_commands, cli
    from edge_models.runtime import read_bundle
    from edge_models.testing import train_sentencepiece

    pytest.importorskip("edge_models_bundler")
    _, root, _ = llama_file
    _load_plugin_commands()
    tokenizer = train_sentencepiece(tmp_path / "tokenizer.model")
    bundle = tmp_path / "m.litertlm"
    args = [
        "convert",
        "llama",
        "--checkpoint",
        str(root / "ck"),
        "-o",
        str(tmp_path / "m.tflite"),
        "--quantize",
        "fp32",
    ]
    extra = ["--merge-lora", str(root / "ok"), "--bundle", str(bundle), "--tokenizer", str(tokenizer)]
    result = CliRunner().invoke(cli, [*args, *extra, "--prefill", "8", "--kv-cache", "64"])
    assert result.exit_code == 0, result.output
    notes = read_bundle(bundle).notes
    assert notes["recipe"] == "fp32" and notes["merged LoRA"].startswith("ok (sha256 ")
