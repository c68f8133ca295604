"""Tiny checkpoints in the ordinary HF layout, one per chat-template family in use.

Each has a byte-level BPE `tokenizer.json` trained on made-up text, `tokenizer_config.json` with the family's
special tokens, `generation_config.json`, and a Jinja chat template of the family's format (written for these
tests, rendering the same strings as the published templates on plain conversations).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.testing import build_reference, corpus


@dataclass(frozen=True)
class Family:
    name: str
    specials: tuple[str, ...]
    bos: str | None
    add_bos: bool
    eos: str
    # Extra end-of-generation tokens listed in generation_config.json only.
    more_eos: tuple[str, ...] = ()
    template: str = ""
    # Where the template lives: "jinja" (chat_template.jinja) or "config" (tokenizer_config.json).
    template_in: str = "jinja"
    architecture: str = "llama"
    extra_config: dict = field(default_factory=dict)


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + (m['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Gemma has no system role: a system message is folded into the first user turn.
GEMMA = """{{- bos_token -}}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}
{%- else -%}{%- set first_prefix = '' -%}{%- set turns = messages -%}{%- endif -%}
{%- for m in turns -%}
{%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{- raise_exception('roles must alternate user/assistant') -}}
{%- endif -%}
{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}
{{- '<start_of_turn>' + role + '\n' + (first_prefix if loop.first else '') -}}
{{- (m['content'] | trim) + '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"""
PHI3 = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)
ZEPHYR = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + eos_token + '\\n' }}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}{% endfor %}"
)
MISTRAL = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] + eos_token }}"
    "{% else %}{{ raise_exception('only user and assistant roles are supported') }}{% endif %}{% endfor %}"
)

FAMILIES = {
    f.name: f
    for f in (
        Family(
            "llama3",
            ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
            bos="<|begin_of_text|>",
            add_bos=True,
            eos="<|eot_id|>",
            more_eos=("<|end_of_text|>",),
            template=LLAMA3,
            template_in="config",
        ),
        Family("chatml", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, False, "<|im_end|>", template=CHATML),
        Family(
            "gemma",
            ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
            bos="<bos>",
            add_bos=True,
            eos="<eos>",
            more_eos=("<end_of_turn>",),
            template=GEMMA,
        ),
        Family(
            "phi3",
            ("<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
            bos="<s>",
            add_bos=False,
            eos="<|end|>",
            more_eos=("</s>",),
            template=PHI3,
        ),
        Family(
            "zephyr",
            ("<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"),
            "<s>",
            True,
            "</s>",
            template=ZEPHYR,
        ),
        Family("mistral", ("<unk>", "<s>", "</s>"), "<s>", True, "</s>", template=MISTRAL, template_in="config"),
    )
}


def train_tokenizer(family: Family, vocab_size: int = 300):
    """A byte-level BPE whose special tokens are ids 0.. in the family's order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    if family.add_bos:
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B", special_tokens=[(family.bos, bos_id)]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def write_chat_checkpoint(family: Family, directory: Path, seed: int = 0) -> Path:
    """A tiny random Llama-architecture model with `family`'s tokenizer files and chat template."""
    directory.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(family)
    tok.save(str(directory / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    hf_config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": False,
        **family.extra_config,
    }
    model = build_reference(hf_config, "LlamaForCausalLM", seed=seed, noise=0.5)
    model.save_pretrained(directory)
    eos_ids = [tok.token_to_id(t) for t in (family.eos, *family.more_eos)]
    bos_id = tok.token_to_id(family.bos) if family.bos else None
    generation = {"eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0], "do_sample": False}
    if bos_id is not None:
        generation["bos_token_id"] = bos_id
    (directory / "generation_config.json").write_text(json.dumps(generation))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": family.bos,
        "eos_token": family.eos,
        "add_bos_token": family.add_bos,
        "model_max_length": 512,
    }
    if family.template_in == "config":
        config["chat_template"] = family.template
    else:
        (directory / "chat_template.jinja").write_text(family.template)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return directory
