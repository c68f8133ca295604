"""Tiny random reference checkpoints for tests, `verify --tiny` and plugin authors' own tests.

Needs `transformers` (the `edge-models[verify]` extra).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import torch


def build_reference(hf_config: dict, reference_class: str, seed: int = 0, noise: float = 0.05):
    """A transformers model with random weights. Every parameter is perturbed, norms included,
    so that a wrong tensor mapping cannot go unnoticed."""
    import transformers

    fields = {k: v for k, v in hf_config.items() if k not in ("architectures", "model_type")}
    config = transformers.AutoConfig.for_model(hf_config["model_type"], **fields)
    config.architectures = list(hf_config.get("architectures", [reference_class]))
    torch.manual_seed(seed)
    cls = getattr(transformers, reference_class)
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return model.eval()


def save_reference(model, directory: str | Path, **save_kwargs) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, **save_kwargs)
    return directory


def tiny_checkpoint(spec, directory: str | Path, seed: int = 0) -> Path:
    """Save a random reference model of `spec`'s tiny config in the HF layout."""
    return save_reference(build_reference(spec.tiny_hf_config, spec.reference_class, seed), directory)


# A tiny SentencePiece model trained on made-up text, so tests need no download.
SPECIALS = ["<start_of_turn>", "<end_of_turn>"]
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "so", "vi", "pe", "du", "ba", "zo", "xe", "fi", "gu", "ha", "jo"]


def corpus(seed: int = 0, lines: int = 2000) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(300)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + rng.choice(".!?") for _ in range(lines)]


def train_sentencepiece(path: Path, vocab_size: int = 256) -> Path:
    """BPE, identity normalizer (keeps the model a few KB), ids 0-2 = <unk> <s> </s>, then SPECIALS."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        user_defined_symbols=SPECIALS,
        character_coverage=1.0,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    return path


def json_schema_violations(value, schema: dict, where: str = "$") -> list[str]:
    """What in `value` breaks `schema`, for the JSON Schema keywords the structured-output cases use (type, enum,
    properties, required, additionalProperties, items, min/maxItems, minimum/maximum, min/maxLength, pattern).
    Independent of the engine that enforced the schema, so a test of that engine can fail."""
    import re

    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
        "integer": int,
        "number": (int, float),
    }
    wanted = schema.get("type")
    if wanted is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, kinds[wanted]) or (is_bool and wanted in ("integer", "number")):
            return [f"{where}: {value!r} is not {wanted}"]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: {key!r} missing")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += json_schema_violations(item, properties[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: {key!r} not allowed")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            problems.append(f"{where}: {len(value)} items")
        for i, item in enumerate(value):
            problems += json_schema_violations(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            problems.append(f"{where}: {value} out of range")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{where}: length {len(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    return problems


def constraint_violations(case: dict, text: str, directory: Path) -> list[str]:
    """Why `text` does not match a structured-output case (benchmarks/data/structured/cases.json); [] if it does."""
    import json
    import re

    if "regex" in case:
        return [] if re.fullmatch(case["regex"], text) else [f"{text!r} does not match {case['regex']}"]
    if "grammar" in case:
        import lark

        try:
            lark.Lark((directory / case["grammar"]).read_text()).parse(text)
        except lark.LarkError as e:
            return [f"{text!r}: {e}"]
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return [f"{text!r} is not JSON: {e}"]
    schema = json.loads((directory / case["json_schema"]).read_text()) if "json_schema" in case else {"type": "object"}
    return json_schema_violations(value, schema)
