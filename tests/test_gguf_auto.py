"""`auto` on a llama.cpp GGUF: the family from `general.architecture`, the config from the file's hyper-parameters,
the tokenizer and special tokens from its metadata."""

from __future__ import annotations

import dataclasses
import json

import gguf
import pytest
import torch

from edge_models.kinds.decoder import gguf_config, load_for_spec, resolve_config, resolve_spec
from edge_models.kinds.decoder_verify import compare
from edge_models.loader.gguf_config import GGUF_ARCHITECTURES
from edge_models.plugins import UnknownModelError, registry
from helpers import fails_cleanly
from helpers.gguf_files import CASES, TINY_GEMMA3, write_gguf

# The HF architecture each case's file holds, as `auto` must find it.
EXPECTED = {
    "llama": "LlamaForCausalLM",
    "llama-bias": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi2": "PhiForCausalLM",
    "phi3": "Phi3ForCausalLM",
}


@pytest.mark.parametrize("arch", sorted(GGUF_ARCHITECTURES))
def test_every_llama_cpp_architecture_has_a_registered_family(arch):
    accepted = {a for e in registry().entries() for a in e.spec.architectures}
    assert set(GGUF_ARCHITECTURES[arch]) <= accepted


@pytest.mark.parametrize("case", sorted(CASES))
def test_auto_reads_each_family_from_its_gguf(case, tmp_path):
    """The family from the metadata, the config from its hyper-parameters (not the published model's), the weights
    through llama.cpp's names and layouts: the same logits and greedy tokens as the model the file was made from."""
    ref, path = write_gguf(CASES[case], tmp_path / f"{case}.gguf")
    spec = resolve_spec("auto", path)
    assert EXPECTED[case] in spec.architectures
    ours = load_for_spec(spec, path)
    assert _rounded(ours.config) == _rounded(spec.config_from_hf(CASES[case].hf_config()))
    ids = torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(3)).tolist()
    result = compare(ours, ref, ids, 8, atol=1e-4)
    assert result.max_abs_diff <= 1e-4 and result.greedy_match == 8, result


def _rounded(config):
    """The config with its floats to float32's precision, which a GGUF stores them in."""

    def walk(x):
        if isinstance(x, float):
            return float(f"{x:.6g}")
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(dataclasses.asdict(config))


class _Metadata:
    """A GGUF's metadata and tensor shapes without its tensors."""

    def __init__(self, arch: str, keys: dict, shapes: dict) -> None:
        self.path, self.architecture = f"{arch}.gguf", arch
        self._keys, self._shapes = {"general.architecture": arch, **keys}, shapes

    def metadata(self, key):
        return self._keys.get(key)

    def names(self):
        return list(self._shapes)

    def has_tensor(self, name):
        return name in self._shapes

    def shape(self, name):
        return self._shapes[name]

    def get(self, name):
        raise AssertionError(f"{name} not expected to be read")


def test_the_published_gemma3_270m_gguf_gives_its_published_config():
    """The metadata of the PyPI Gemma 3 270M GGUF (the README's main job) reads as the plugin's published config."""
    keys = {
        "gemma3.context_length": 32768,
        "gemma3.embedding_length": 640,
        "gemma3.feed_forward_length": 2048,
        "gemma3.block_count": 18,
        "gemma3.attention.head_count": 4,
        "gemma3.attention.head_count_kv": 1,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.rope.freq_base": 1_000_000.0,
        "gemma3.attention.sliding_window": 512,
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
    }
    file = _Metadata("gemma3", keys, {"token_embd.weight": (262144, 640)})
    spec = registry().get("gemma3-270m")
    assert gguf_config(spec, file) == spec.config


def test_unknown_architecture_is_one_error_naming_it(run, tmp_path):
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnknownModelError, match="GGUF architecture 'mamba'.*supported: gemma, gemma2, gemma3, llama"):
        resolve_spec("auto", path)
    result = run("convert", "auto", "--checkpoint", path, "-o", tmp_path / "m.tflite")
    fails_cleanly(result, "GGUF architecture 'mamba'", "phi2, phi3, qwen2, qwen3")
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "m.tflite").exists()


def test_a_named_model_of_another_family_is_refused(tmp_path):
    _, path = write_gguf(CASES["qwen2"], tmp_path / "qwen2.gguf")
    with pytest.raises(ValueError, match="holds a GGUF 'qwen2' model .*gemma3-270m does not read"):
        resolve_config(registry().get("gemma3-270m"), path)


@pytest.mark.parametrize("case", ["llama", "gemma3"])
@pytest.mark.slow
def test_verify_auto_on_a_gguf(case, run, tmp_path):
    _, path = write_gguf(CASES[case], tmp_path / f"{case}.gguf")
    result = run("verify", "auto", "--checkpoint", path, "--tokens", "8")
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output


def test_verify_names_an_architecture_transformers_cannot_read(run, tmp_path):
    _, path = write_gguf(CASES["phi2"], tmp_path / "phi2.gguf")
    fails_cleanly(
        run("verify", "auto", "--checkpoint", path, "--tokens", "2"), "does not read GGUF architecture 'phi2'"
    )


def test_token_conventions_come_from_the_gguf(tmp_path):
    """Start token, end-of-generation tokens (the family's end-of-turn joins the file's end of sequence, as in
    llama.cpp) and chat template, as a checkpoint's token files say them."""
    from edge_models.convert.pipeline import checkpoint_tokenizer
    from edge_models.hf import read_checkpoint_tokens
    from edge_models.loader.gguf_tokenizer import write_token_files_from_gguf

    _, path = write_gguf(TINY_GEMMA3, tmp_path / "g3.gguf", tokenizer=True)
    spec = resolve_spec("auto", path)
    directory = write_token_files_from_gguf(path, tmp_path / "tok", stop_tokens=spec.tokenizer.stop_tokens)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<s>", "</s>", True)
    own = read_checkpoint_tokens(directory)
    assert (own.bos, own.eos) == ("<s>", ("</s>", "<end_of_turn>"))
    assert own.chat_template is not None
    # Calibration reads the same conventions (the plugin's '<bos>' is not in this vocabulary; the file's '<s>' is).
    tok, start = checkpoint_tokenizer(path, None, "calibrated schemes", spec)
    assert start == "<s>" and tok.piece_to_id("<s>") == 1


def test_a_gguf_tokenizer_that_cannot_be_rebuilt_says_so(tmp_path):
    from edge_models.convert.pipeline import PipelineError, checkpoint_tokenizer

    path = tmp_path / "bpe.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        PipelineError, match="calibrated schemes need the model's tokenizer: .*'gpt2'.*give --tokenizer"
    ):
        checkpoint_tokenizer(path, None, "calibrated schemes", registry().get("qwen2"))


@pytest.mark.slow
def test_convert_auto_bundles_a_gguf_with_its_own_tokenizer(run, tmp_path):
    """`convert auto --checkpoint gemma-3.gguf --quantize fp16 --bundle` on a tiny Gemma 3 GGUF: a .litertlm with
    the tokenizer, special tokens and chat template rebuilt from the file."""
    _, path = write_gguf(TINY_GEMMA3, tmp_path / "g3.gguf", tokenizer=True)
    out, bundle = tmp_path / "g3.tflite", tmp_path / "g3.litertlm"
    small = ["--prefill", "8", "--kv-cache", "64", "--verify", "", "--decode-windows", "", "--prefill-windows", ""]
    result = run("convert", "auto", "--checkpoint", path, "--quantize", "fp16", "-o", out, "--bundle", bundle, *small)
    assert result.exit_code == 0, result.output
    assert f"loading {path} as gemma3-270m" in result.output
    assert "start '<s>', stop ['</s>', '<end_of_turn>'], Jinja chat template" in result.output
    assert (tmp_path / "g3.tokenizer" / "tokenizer.model").exists() and bundle.exists()
