"""Writing, checking and inspecting bundles; every validation has a bad input that leaves no file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from edge_models.cli import _load_plugin_commands, cli
from edge_models.formats.task import read_task
from edge_models.spec import PromptTemplate
from spm_util import train_sentencepiece

from edge_models_bundler import BundleError, BundleOptions, check_bundle, resolve_options, write_bundle, write_task

GEMMA_STYLE = PromptTemplate(
    user_prefix="<start_of_turn>user\n",
    user_suffix="<end_of_turn>\n",
    model_prefix="<start_of_turn>model\n",
    model_suffix="<end_of_turn>\n",
)
OPTIONS = BundleOptions(start_token="<s>", stop_tokens=("</s>", "<end_of_turn>"), template=GEMMA_STYLE)


def _run(*args: str):
    _load_plugin_commands()
    return CliRunner().invoke(cli, list(args))


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*")), "a partial file was left behind"


def test_convert_bundle_in_one_go(tiny_task):
    b = read_task(tiny_task)
    assert list(b.entries) == [
        "TF_LITE_PREFILL_DECODE",
        "TOKENIZER_MODEL",
        "METADATA",
        "EDGE_MODELS_SELF_TEST",
        "EDGE_MODELS_NOTES",
    ]
    assert all(e.aligned for e in b.entries.values())
    from edge_models.runtime import read_bundle

    assert read_bundle(tiny_task).notes["recipe"].startswith("int8")
    # --model llama gave the defaults: the spec's start/stop tokens.
    assert b.params.start_token == "<s>" and b.params.stop_tokens == ("</s>",)
    report = check_bundle(tiny_task)
    assert report.ok and not report.warnings, report.warnings


def test_self_test_replays_and_catches_a_different_model(tmp_path, tiny_task, tokenizer):
    """The recorded tokens replay in every runtime; a bundle whose model was swapped afterwards is caught."""
    from edge_models.convert import ExportSettings, convert
    from edge_models.kinds.decoder import random_model
    from edge_models.plugins import registry

    from edge_models_bundler import write_task
    from edge_models_bundler.selftest import replay

    assert replay(tiny_task).passed
    record = read_task(tiny_task).read("EDGE_MODELS_SELF_TEST")
    other = random_model(registry().get("llama").tiny_config, seed=9)
    other_tflite = convert(other, tmp_path / "o.tflite", ExportSettings((8,), 64), "fp32", progress=None).path
    swapped = tmp_path / "swapped.task"
    options = BundleOptions(start_token="<s>", stop_tokens=("</s>",), self_test=json.loads(record))
    write_task(swapped, other_tflite, tokenizer, options)
    result = replay(swapped)
    assert not result.passed and "tokens agree" in result.results[0].detail


def test_a_bundles_model_runs_mapped_from_one_copy_in_the_cache(tiny_task, tmp_path, monkeypatch):
    """The runtime copies a bundle's model section once into the cache and maps it like a .tflite (not read into
    memory on every load); the text is what the bundle's bytes give."""
    from edge_models.runtime import Generator, read_bundle
    from edge_models.runtime import weight_cache as wc

    monkeypatch.setenv(wc.ENV_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(wc.ENV_OFF, raising=False)
    prompt_ids = None
    outputs = []
    for _ in range(2):
        gen = Generator.open(tiny_task)
        prompt_ids = gen.encode("kalo mira")
        outputs.append(list(gen.generate_ids(prompt_ids, 8, speculate=False)))
    copies = list((tmp_path / "cache" / "models").iterdir())
    assert len(copies) == 1 and copies[0].read_bytes() == read_bundle(tiny_task).tflite
    assert gen.model.weight_cache[0] == "reused"
    monkeypatch.setenv(wc.ENV_OFF, "1")
    from_bytes = Generator.open(tiny_task)
    assert from_bytes.model.weight_cache is None
    assert outputs[0] == outputs[1] == list(from_bytes.generate_ids(prompt_ids, 8, speculate=False))


def test_check_run_says_which_replay_it_could_not_run(tiny_task, monkeypatch):
    """Without litert-lm-api, `bundle check --run` names the LiteRT-LM replay as skipped and how to get it."""
    import sys

    from click.testing import CliRunner
    from edge_models import cli as cli_module

    monkeypatch.setitem(sys.modules, "litert_lm", None)  # as if not installed: importing it raises ImportError
    cli_module._add_builtin_groups()
    cli_module._load_plugin_commands()
    result = CliRunner().invoke(cli_module.cli, ["bundle", "check", "--run", str(tiny_task)])
    assert result.exit_code == 0, result.output
    assert "edge-models  agrees" in result.output
    assert "LiteRT-LM    not run: litert-lm-api is not installed here (pip install litert-lm-api)" in (result.output)


def test_write_task_and_read_it_back(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "m.task"
    report = write_task(out, tiny_tflite, tokenizer, OPTIONS)
    assert report.ok and report.tflite.vocab_size == 256 and report.tokenizer_pieces == 256
    b = read_task(out)
    assert b.tflite == tiny_tflite.read_bytes() and b.tokenizer_model == tokenizer.read_bytes()
    assert b.params.prompt_template == GEMMA_STYLE
    assert b.params.stop_tokens == ("</s>", "<end_of_turn>")
    with zipfile.ZipFile(out) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert zf.testzip() is None
    # Same inputs, same bytes.
    again = tmp_path / "again.task"
    write_task(again, tiny_tflite, tokenizer, OPTIONS)
    assert again.read_bytes() == out.read_bytes()


def test_cli_bundle_inspect_check(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "cli.task"
    r = _run(
        "bundle",
        "--tflite",
        str(tiny_tflite),
        "--tokenizer",
        str(tokenizer),
        "--start-token",
        "<s>",
        "--stop-token",
        "</s>",
        "--stop-token",
        "<end_of_turn>",
        "--prompt-prefix-user",
        "<start_of_turn>user\n",
        "--prompt-suffix-user",
        "<end_of_turn>\n",
        "--prompt-prefix-model",
        "<start_of_turn>model\n",
        "--prompt-suffix-model",
        "<end_of_turn>\n",
        "--system-prompt",
        "Be brief.",
        "--note",
        "merged LoRA=support-bot (sha256 0123456789ab)",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert read_task(out).params.system_prompt == "Be brief."
    r = _run("bundle", "inspect", str(out))
    assert r.exit_code == 0, r.output
    for text in (
        "TF_LITE_PREFILL_DECODE",
        "METADATA",
        "'<end_of_turn>'",
        "signature prefill_8",
        "kv_cache_v_1",
        "256 pieces",
        "'Be brief.'",
        "[1, 2, 32, 64]",
        "merged LoRA        support-bot (sha256 0123456789ab)",
    ):
        assert text in r.output
    r = _run("bundle", "check", str(out))
    assert r.exit_code == 0 and "OK" in r.output


def test_notes_round_trip_in_both_formats(tmp_path, tiny_tflite, tokenizer):
    from edge_models.runtime import read_bundle

    notes = {"recipe": "int8-gptq", "merged LoRA": "support-bot (sha256 0123456789ab)"}
    for out in (tmp_path / "n.task", tmp_path / "n.litertlm"):
        write_bundle(out, tiny_tflite, tokenizer, OPTIONS.replace(notes=notes))
        assert read_bundle(out).notes == notes
    assert _run("bundle", "--tflite", "x", "--note", "no equals sign", "-o", "y").exit_code == 2


def test_cli_model_defaults_and_overrides(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "defaults.task"
    r = _run(
        "bundle",
        "--tflite",
        str(tiny_tflite),
        "--tokenizer",
        str(tokenizer),
        "--model",
        "llama",
        "--prompt-prefix-user",
        "U:",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    p = read_task(out).params
    assert (p.start_token, p.stop_tokens, p.prompt_template.user_prefix) == ("<s>", ("</s>",), "U:")


def test_system_prompt_with_model_system_affixes_is_rendered():
    opts = resolve_options("tinyllama-1.1b", system_prompt="Be brief.")
    assert opts.system_prompt == "<|system|>\nBe brief.</s>\n"
    assert not opts.template.system_prefix and opts.template.user_prefix == "<|user|>\n"


def test_cli_needs_inputs():
    r = _run("bundle", "--tokenizer", "x.model")
    assert r.exit_code != 0 and "--tflite" in r.output and "-o/--output" in r.output


# ----------------------------------------------------------------------------- every validation, bad input


@pytest.fixture
def bad_tokenizer(tmp_path) -> Path:
    p = tmp_path / "bad.model"
    p.write_bytes(b"this is not a sentencepiece model")
    return p


@pytest.fixture(scope="module")
def big_tokenizer(tmp_path_factory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("big") / "big.model", 300)


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory) -> Path:
    return train_sentencepiece(tmp_path_factory.mktemp("small") / "small.model", 200)


def _renamed_tflite(tmp_path: Path, tiny_tflite: Path, old: bytes, new: bytes) -> Path:
    """The tiny model with every string `old` renamed (same length keeps the flatbuffer valid)."""
    assert len(old) == len(new)
    p = tmp_path / f"renamed_{new.decode()}.tflite"
    p.write_bytes(tiny_tflite.read_bytes().replace(old, new))
    return p


CASES = {
    "tokenizer not sentencepiece": ({"tokenizer": "bad"}, "must load as SentencePiece"),
    "tokenizer.json in a .task": ({"tokenizer": "json"}, "carries only a SentencePiece"),
    "tokenizer missing": ({"tokenizer": "missing"}, "no such file"),
    "start token not in vocab": (
        {"options": OPTIONS.replace(start_token="<bos>")},
        "start token '<bos>' is not a single piece",
    ),
    "stop token not in vocab": (
        {"options": OPTIONS.replace(stop_tokens=("</s>", "<eos>"))},
        "stop token '<eos>' is not a single piece",
    ),
    "stop token of two pieces": (
        {"options": OPTIONS.replace(stop_tokens=("kalo mine",))},
        "stop token 'kalo mine' is not a single piece",
    ),
    "no stop token": ({"options": OPTIONS.replace(stop_tokens=())}, "no stop token"),
    "more pieces than logits": ({"tokenizer": "big"}, "the tokenizer has 300 pieces but the model's logits have 256"),
    "no decode signature": ({"tflite": (b"decode", b"decodX")}, "no 'decode' signature"),
    "no prefill signature": ({"tflite": (b"prefill_8", b"prefxll_8")}, "no 'prefill' or 'prefill_<N>' signature"),
    "wrong tensor name": ({"tflite": (b"kv_cache_v_1", b"kv_cache_w_1")}, "lacks inputs ['kv_cache_v_1']"),
    "tflite not a model": ({"tflite": "garbage"}, "not a loadable .tflite model"),
    "tflite missing": ({"tflite": "missing"}, "no such file"),
    "placeholder in template": (
        {"options": OPTIONS.replace(template=PromptTemplate(user_prefix="Q: {prompt}"))},
        "--prompt-prefix-user contains the placeholder '{prompt}'",
    ),
    "jinja in template": (
        {"options": OPTIONS.replace(template=PromptTemplate(model_prefix="{{ bos }}"))},
        "--prompt-prefix-model contains the placeholder",
    ),
    "system prompt and system affixes": (
        {"options": OPTIONS.replace(system_prompt="hi", template=PromptTemplate(system_prefix="S:"))},
        "mutually exclusive",
    ),
    "wrong output suffix": ({"output": "model.zip"}, "must be named *.task"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_rejects_and_writes_nothing(case, tmp_path, tiny_tflite, tokenizer, bad_tokenizer, big_tokenizer):
    changes, message = CASES[case]
    tok = {"bad": bad_tokenizer, "big": big_tokenizer, "missing": tmp_path / "nope.model"}.get(
        changes.get("tokenizer"), tokenizer
    )
    if changes.get("tokenizer") == "json":
        tok = tmp_path / "tokenizer.json"
        tok.write_text("{}")
    model = tiny_tflite
    if isinstance(changes.get("tflite"), tuple):
        model = _renamed_tflite(tmp_path, tiny_tflite, *changes["tflite"])
    elif changes.get("tflite") == "garbage":
        model = tmp_path / "garbage.tflite"
        model.write_bytes(b"\0" * 64)
    elif changes.get("tflite") == "missing":
        model = tmp_path / "absent.tflite"
    out = tmp_path / changes.get("output", "model.task")
    with pytest.raises(BundleError) as e:
        write_task(out, model, tok, changes.get("options", OPTIONS))
    assert message in str(e.value)
    _nothing_written(out)


def test_cli_reports_problem_and_writes_nothing(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "cli.task"
    r = _run(
        "bundle", "--tflite", str(tiny_tflite), "--tokenizer", str(tokenizer), "--start-token", "<s>", "-o", str(out)
    )
    assert r.exit_code == 1 and "no stop token" in r.output
    _nothing_written(out)


def test_fewer_pieces_than_logits_warns_but_writes(tmp_path, tiny_tflite, small_tokenizer):
    out = tmp_path / "padded.task"
    report = write_task(out, tiny_tflite, small_tokenizer, OPTIONS.replace(template=PromptTemplate()))
    assert out.is_file()
    assert any("200 pieces and the logits 256" in w for w in report.warnings)


def test_failure_while_writing_leaves_nothing(tmp_path, tiny_tflite, tokenizer, monkeypatch):
    from edge_models_bundler import task

    def explode(f, sources, date_time):
        f.write(b"half a bundle")
        raise OSError("disk full")

    monkeypatch.setattr(task, "write_aligned_zip", explode)
    out = tmp_path / "m.task"
    with pytest.raises(OSError, match="disk full"):
        write_task(out, tiny_tflite, tokenizer, OPTIONS)
    _nothing_written(out)


def test_existing_output_survives_a_failed_bundle(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "keep.task"
    write_task(out, tiny_tflite, tokenizer, OPTIONS)
    before = out.read_bytes()
    with pytest.raises(BundleError):
        write_task(out, tiny_tflite, tokenizer, OPTIONS.replace(stop_tokens=()))
    assert out.read_bytes() == before


# ----------------------------------------------------------------------------- check on someone else's bundle


def test_check_flags_unaligned_and_bad_tokens(tmp_path, tiny_task):
    b = read_task(tiny_task)
    from edge_models.formats.task import LlmParams, encode_llm_params

    meta = encode_llm_params(LlmParams(start_token="<bos>", stop_tokens=()))
    other = tmp_path / "other.task"
    with zipfile.ZipFile(other, "w") as zf:  # plain zipfile: no alignment
        zf.writestr("TF_LITE_PREFILL_DECODE_", b"")  # shifts the next entry off a 4-byte boundary
        zf.writestr("TF_LITE_PREFILL_DECODE", b.tflite)
        zf.writestr("TOKENIZER_MODEL", b.tokenizer_model)
        zf.writestr("METADATA", meta)
    report = check_bundle(other)
    text = "\n".join(report.problems)
    assert "not 4-byte aligned" in text
    assert "start token '<bos>' is not a single piece" in text
    assert "no stop token" in text
    assert any("not one MediaPipe reads" in w for w in report.warnings)
    r = _run("bundle", "check", str(other))
    assert r.exit_code == 1 and "problem:" in r.output


def test_check_rejects_hostile_file(tmp_path):
    evil = tmp_path / "evil.task"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../etc/cron.d/x", b"boom")
    report = check_bundle(evil)
    assert not report.ok and "unsafe entry name" in report.problems[0]
    r = _run("bundle", "inspect", str(evil))
    assert r.exit_code == 1 and "unsafe entry name" in r.output


def test_write_bundle_picks_format_by_suffix(tmp_path, tiny_tflite, tokenizer):
    out = tmp_path / "m.litertlm"
    write_bundle(out, tiny_tflite, tokenizer, OPTIONS)
    assert out.is_file() and not zipfile.is_zipfile(out)
