"""A checkpoint's own conventions, read as transformers reads them: its Jinja chat template renders the same text
(and our tokenizer the same ids) as `apply_chat_template`, its special tokens come from its own files, and the fixed
affixes a .task bundle needs are derived from the template (or refused where none can express it)."""

from __future__ import annotations

import pytest

from edge_models.hf import ChatTemplateError, read_checkpoint_tokens
from edge_models.runtime import load_tokenizer
from helpers.chat_checkpoints import FAMILIES, write_chat_checkpoint

transformers = pytest.importorskip("transformers")

CONVERSATIONS = [
    [{"role": "user", "content": "kalo mine ruta"}],
    [
        {"role": "user", "content": "kalo mine"},
        {"role": "assistant", "content": "so vi pe."},
        {"role": "user", "content": "ba zo duta"},
    ],
    [
        {"role": "system", "content": "be ruta."},
        {"role": "user", "content": "kalo mine"},
        {"role": "assistant", "content": " so vi pe. "},
        {"role": "user", "content": "ba zo"},
    ],
]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_chat_templates_render_like_transformers(family, tmp_path):
    directory = write_chat_checkpoint(FAMILIES[family], tmp_path / family)
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    ours = read_checkpoint_tokens(directory)
    tok = load_tokenizer(ours.tokenizer)
    compared = 0
    for messages in CONVERSATIONS:
        for opened in (True, False):
            try:
                expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=opened)
            except Exception:  # noqa: BLE001 - the template itself rejects this conversation (Mistral: no system)
                with pytest.raises(ChatTemplateError, match="fails to render"):
                    ours.chat_template.render(messages, opened)
                continue
            assert ours.chat_template.render(messages, opened) == expected
            ids = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=opened, return_dict=True)
            assert tok.encode(expected) == ids["input_ids"]
            compared += 1
    assert compared >= 4


EXPECTED_TOKENS = {
    "llama3": ("<|begin_of_text|>", ("<|eot_id|>", "<|end_of_text|>")),
    "chatml": (None, ("<|im_end|>",)),
    "gemma": ("<bos>", ("<eos>", "<end_of_turn>")),
    "phi3": (None, ("<|end|>", "</s>")),
    "zephyr": ("<s>", ("</s>",)),
    "mistral": ("<s>", ("</s>",)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_special_tokens_come_from_the_checkpoint(family, tmp_path):
    from edge_models.hf import resolve_conventions
    from edge_models.plugins import registry

    directory = write_chat_checkpoint(FAMILIES[family], tmp_path / family)
    # The llama plugin's defaults (<s>, </s>) fill only what the checkpoint does not say.
    got = resolve_conventions(read_checkpoint_tokens(directory), registry().get("llama").tokenizer)
    assert (got.start_token, got.stop_tokens) == EXPECTED_TOKENS[family]
    hf = transformers.AutoTokenizer.from_pretrained(directory)
    plain = hf("kalo mine")["input_ids"]
    tok = load_tokenizer(directory / "tokenizer.json")
    assert plain == ([tok.piece_to_id(got.start_token)] if got.start_token else []) + tok.encode("kalo mine")


def test_affixes_derived_for_task_bundles(tmp_path):
    chatml = read_checkpoint_tokens(write_chat_checkpoint(FAMILIES["chatml"], tmp_path / "c")).chat_template
    preamble, affixes = chatml.affixes()
    assert preamble == ""
    assert (affixes.user_prefix, affixes.user_suffix) == ("<|im_start|>user\n", "<|im_end|>\n")
    assert (affixes.model_prefix, affixes.system_prefix) == ("<|im_start|>assistant\n", "<|im_start|>system\n")
    gemma = read_checkpoint_tokens(write_chat_checkpoint(FAMILIES["gemma"], tmp_path / "g")).chat_template
    preamble, affixes = gemma.affixes()
    # Gemma folds a system message into the first user turn: no system affixes can express that.
    assert preamble == "<bos>" and affixes.user_prefix == "<start_of_turn>user\n" and not affixes.system_prefix
    for messages in CONVERSATIONS[:2]:
        assert preamble + affixes.render_messages(messages) == gemma.render(messages)
    from edge_models.hf import ChatTemplate

    numbered = ChatTemplate("{% for m in messages %}[{{ loop.index }}] {{ m['content'] }}\n{% endfor %}")
    with pytest.raises(ChatTemplateError, match="cannot be written as fixed text"):
        numbered.affixes()
