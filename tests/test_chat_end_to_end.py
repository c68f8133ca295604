"""A checkpoint in the ordinary HF layout, with its own tokenizer, special tokens, generation settings and Jinja chat
template, converted and bundled with no other flag: every runtime (ours on the bundle and the bare .tflite, `generate
--chat`, `chat`, LiteRT-LM) prompts and answers it as `transformers` does, and its bad files are named before anything
is written. How the conventions themselves are read is in test_hf_conventions.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edge_models import cli as cli_module
from edge_models.runtime import ChatSession, Generator, load_tokenizer
from helpers.chat_checkpoints import FAMILIES, write_chat_checkpoint

transformers = pytest.importorskip("transformers")

# Families of the end-to-end test: several EOS ids (Llama 3), no BOS (ChatML), system folded into the first turn
# (Gemma), BOS known but not added (Phi-3), EOS written by the template (Zephyr).
END_TO_END = ["llama3", "chatml", "gemma", "phi3", "zephyr"]
NEW_TOKENS = 12
PROMPT = "kalo mine ruta"


@pytest.fixture
def run():
    runner = CliRunner()
    cli_module._add_builtin_groups()
    cli_module._load_plugin_commands()

    def invoke(*args, input=None):
        return runner.invoke(cli_module.cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """family -> checkpoint directory holding m.tflite and m.litertlm, made by one flag-free command each."""
    made = {}

    def make(family: str) -> Path:
        if family not in made:
            d = write_chat_checkpoint(FAMILIES[family], tmp_path_factory.mktemp(family) / "ckpt")
            result = CliRunner().invoke(
                cli_module.cli,
                ["convert", "auto", "--checkpoint", str(d), "--quantize", "fp32", "--prefill", "8,32"]
                + ["--kv-cache", "256", "-o", str(d / "m.tflite"), "--bundle", str(d / "m.litertlm")],
                catch_exceptions=False,
            )
            assert result.exit_code == 0, result.output
            made[family] = d
        return made[family]

    cli_module._load_plugin_commands()
    return make


def _hf(directory: Path):
    tok = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    return tok, model


def _hf_greedy(tok, model, messages) -> tuple[list[int], list[int]]:
    """(prompt ids, generated ids without the final end-of-generation token) from transformers."""
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    new = out[0, len(ids) :].tolist()
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    return ids, new[:-1] if new and new[-1] in eos else new


def _engine_chat(bundle: Path, messages: list[dict]) -> str:
    litert_lm = pytest.importorskip("litert_lm")
    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    engine = litert_lm.Engine(str(bundle))
    try:
        conversation = engine.create_conversation(
            sampler_config=litert_lm.SamplerConfig(top_k=1), max_output_tokens=NEW_TOKENS
        )
        reply = conversation.send_message(messages[-1])
        conversation.close()
    finally:
        engine.close()
    content = reply["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.mark.parametrize("family", END_TO_END)
@pytest.mark.slow
def test_own_checkpoint_end_to_end(family, converted, run):
    """convert auto --checkpoint DIR --bundle m.litertlm with no other flag; then our runtime (bundle and bare
    .tflite), `generate --chat` and LiteRT-LM's conversation API all answer as transformers does."""
    directory = converted(family)
    messages = [{"role": "user", "content": PROMPT}]
    hf_ids, hf_new = _hf_greedy(*_hf(directory), messages)
    assert len(hf_new) >= 3, "the tiny model stopped at once: nothing to compare"
    for source in (directory / "m.litertlm", directory / "m.tflite"):
        gen = Generator.open(source)
        assert gen.encode_chat(messages) == hf_ids, source.name
        assert list(gen.generate_ids(hf_ids, NEW_TOKENS)) == hf_new, source.name
    text = gen.tokenizer.decode(hf_new)
    out = run("generate", directory / "m.litertlm", "--chat", "--prompt", PROMPT, "--max-tokens", NEW_TOKENS)
    assert out.exit_code == 0 and out.stdout == text + "\n"
    assert _engine_chat(directory / "m.litertlm", messages) == text


@pytest.mark.slow
def test_self_test_replays_in_every_runtime(converted, run):
    bundle = converted("llama3") / "m.litertlm"
    out = run("bundle", "check", "--run", bundle)
    assert out.exit_code == 0, out.output
    assert "edge-models  agrees: 16/16" in out.stdout or "edge-models  agrees" in out.stdout
    if "LiteRT-LM" in out.stdout:
        assert "LiteRT-LM    agrees: same text" in out.stdout


@pytest.mark.slow
def test_chat_keeps_the_cache_across_turns(converted):
    """Five turns with the cache reused give the replies of five turns re-prefilled from scratch, prefilling
    only each turn's new tokens."""
    directory = converted("chatml")
    lines = ["kalo mine", "ba zo", "so vi", "pe ka", "ruta"]
    replies = {}
    for reuse in (True, False):
        session = ChatSession(Generator.open(directory / "m.litertlm"), max_tokens=3, reuse_cache=reuse)
        replies[reuse], previous_prompt = [], 0
        for line in lines:
            replies[reuse].append("".join(session.send(line)))
            stats = session.generator.last_stats
            if reuse and len(replies[reuse]) > 1:
                # At least the previous turn's whole prompt comes from the cache.
                assert stats.prompt_tokens - stats.prefilled_tokens >= previous_prompt
            elif not reuse:
                assert stats.prefilled_tokens == stats.prompt_tokens
            previous_prompt = stats.prompt_tokens
    assert replies[True] == replies[False]


@pytest.mark.slow
def test_chat_verb_through_piped_input(converted, run):
    bundle = converted("chatml") / "m.litertlm"
    out = run("chat", bundle, "--max-tokens", 5, input="kalo mine\nba zo\n/reset\nkalo mine\n/system be ruta\nso vi\n")
    assert out.exit_code == 0, out.output
    replies = out.stdout.splitlines()
    assert len(replies) == 4 and replies[0] == replies[2], replies
    turns = [line for line in out.stderr.splitlines() if line.startswith("[turn")]
    assert len(turns) == 4
    assert "from the cache" in turns[1] and "from the cache" not in turns[2] and "from the cache" not in turns[3]
    assert "[new conversation, system message 'be ruta']" in out.stderr


@pytest.mark.slow
def test_conversation_longer_than_the_cache_is_refused(converted):
    from edge_models.runtime import ConversationFullError

    session = ChatSession(Generator.open(converted("chatml") / "m.litertlm"), max_tokens=4)
    with pytest.raises(ConversationFullError, match="KV cache holds 256.*/reset"):
        for _ in range(80):
            "".join(session.send("kalo mine ruta so vi pe ba zo duta"))


@pytest.mark.slow
def test_generate_on_tflite_needs_no_flags(converted, run):
    directory = converted("llama3")
    out = run("generate", directory / "m.tflite", "--chat", "--prompt", PROMPT, "--max-tokens", NEW_TOKENS)
    assert out.exit_code == 0, out.output
    bundled = run("generate", directory / "m.litertlm", "--chat", "--prompt", PROMPT, "--max-tokens", NEW_TOKENS)
    assert out.stdout == bundled.stdout


@pytest.mark.slow
def test_no_start_token_bundles_as_litertlm_only(converted, tmp_path, run):
    from edge_models_bundler import BundleError, BundleOptions, write_task
    from edge_models_bundler.validate import Report, check_task_chat

    directory = converted("chatml")
    assert Generator.open(directory / "m.litertlm").start_token is None
    out = run("bundle", "--tflite", directory / "m.tflite", "--checkpoint", directory, "-o", tmp_path / "m.task")
    assert out.exit_code != 0 and ".litertlm" in out.output and not (tmp_path / "m.task").exists()
    report = Report()
    check_task_chat(BundleOptions(None, ("</s>",)), report)
    assert report.problems and ".litertlm" in report.problems[0]
    with pytest.raises(BundleError):
        write_task(
            tmp_path / "x.task", directory / "m.tflite", directory / "tokenizer.json", BundleOptions(None, ("</s>",))
        )


BAD_FILES = {
    "template does not render": (
        "chat_template.jinja",
        "{{ messages[0]['content'] + 1 }}",
        ["chat_template.jinja", "fails to render"],
    ),
    "template does not compile": ("chat_template.jinja", "{% for m in messages %}", ["chat_template.jinja", "compile"]),
    "eos token not in the vocabulary": (
        "tokenizer_config.json",
        {"eos_token": "<|nope|>"},
        ["tokenizer_config.json field 'eos_token'", "'<|nope|>' is not a token"],
    ),
    "eos id beyond the vocabulary": (
        "generation_config.json",
        {"eos_token_id": [2, 99999]},
        ["generation_config.json field 'eos_token_id'", "id 99999 is beyond the vocabulary"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_checkpoint_files_are_named_and_nothing_is_written(case, tmp_path, run):
    directory = write_chat_checkpoint(FAMILIES["chatml"], tmp_path / "ckpt")
    name, change, fragments = BAD_FILES[case]
    if isinstance(change, dict):
        data = json.loads((directory / name).read_text())
        data.update(change)
        (directory / name).write_text(json.dumps(data))
    else:
        (directory / name).write_text(change)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run(
        "convert",
        "auto",
        "--checkpoint",
        directory,
        "--quantize",
        "fp32",
        "-o",
        out_dir / "m.tflite",
        "--bundle",
        out_dir / "m.litertlm",
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert not list(out_dir.iterdir())


@pytest.mark.slow
def test_native_logs_go_to_the_log_file(converted, tmp_path):
    bundle = converted("chatml") / "m.litertlm"
    env = {**os.environ, "EDGE_MODELS_LOG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "edge_models.cli", "generate", str(bundle), "--prompt", "ka", "--max-tokens", "3"]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip().startswith("[") and len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert "XNNPACK" in (tmp_path / "generate.log").read_text()
    loud = subprocess.run(command[:3] + ["-v"] + command[3:], capture_output=True, text=True, env=env, timeout=120)
    assert loud.returncode == 0 and "XNNPACK" in loud.stderr


GEMMA_STYLE_SP = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.mark.slow
def test_sentencepiece_checkpoint_bundles_as_task_with_no_flags(tmp_path, run):
    """A checkpoint with a SentencePiece tokenizer.model: `--bundle m.task` needs no other flag; the .task (affixes
    derived from the Jinja template) prompts and answers like the .tflite run on the checkpoint's own files, and
    LiteRT-LM's conversation API on the .task gives the same text."""
    from edge_models.plugins import registry
    from edge_models.testing import tiny_checkpoint, train_sentencepiece

    directory = tiny_checkpoint(registry().get("llama"), tmp_path / "ckpt")
    tok = load_tokenizer(train_sentencepiece(directory / "tokenizer.model", vocab_size=256))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "chat_template": GEMMA_STYLE_SP})
    )
    eos = [tok.piece_to_id("</s>"), tok.piece_to_id("<end_of_turn>")]
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    out = run(
        "convert",
        "auto",
        "--checkpoint",
        directory,
        "--quantize",
        "fp32",
        "--prefill",
        "8,32",
        "--kv-cache",
        "128",
        "-o",
        directory / "m.tflite",
        "--bundle",
        directory / "m.task",
    )
    assert out.exit_code == 0, out.output
    messages = [{"role": "user", "content": "kalo mine ruta"}]
    bare, task = Generator.open(directory / "m.tflite"), Generator.open(directory / "m.task")
    ids = bare.encode_chat(messages)
    # The start token as its id (SentencePiece would spell "<s>" out as text), the turn marker as one piece.
    assert ids[0] == tok.piece_to_id("<s>") and tok.piece_to_id("<start_of_turn>") in ids[1:3]
    assert task.encode_chat(messages) == ids and task.stop_tokens == ("</s>", "<end_of_turn>")
    generated = list(bare.generate_ids(ids, NEW_TOKENS))
    assert generated and list(task.generate_ids(ids, NEW_TOKENS)) == generated
    assert _engine_chat(directory / "m.task", messages) == tok.decode(generated)


@pytest.mark.slow
def test_bench_and_inspect_take_litertlm(converted, run):
    bundle = converted("llama3") / "m.litertlm"
    bench = run("bench", bundle, "--decode-tokens", 8)
    assert bench.exit_code == 0 and "m.litertlm" in bench.stdout, bench.output
    inspect = run("bundle", "inspect", bundle)
    assert inspect.exit_code == 0, inspect.output
    for fragment in ("HF_Tokenizer_Zlib", "start_token        '<|begin_of_text|>'", "jinja template", "self-test"):
        assert fragment in inspect.stdout, inspect.stdout
