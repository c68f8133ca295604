"""A checkpoint's own token conventions: which tokenizer file, the start token and whether plain text gets it,
every end-of-generation token, and the chat template.

Read from the files `transformers` reads (`tokenizer_config.json`, `generation_config.json`, `config.json`,
`tokenizer.json`'s post-processor, `chat_template.jinja`). The checkpoint is the source of truth; a plugin's
defaults fill only what it does not say, and explicit flags beat both (`resolve_conventions`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.hf.chat_template import ChatTemplate, ChatTemplateError
from edge_models.spec import PromptTemplate, TokenizerDefaults

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class CheckpointConventionError(ValueError):
    """A file of the checkpoint names a token or id the tokenizer does not have; the message names file and field."""


@dataclass(frozen=True)
class CheckpointTokens:
    """What the checkpoint's files say; None where they say nothing."""

    directory: Path
    tokenizer: Path | None = None
    bos: str | None = None
    add_bos: bool | None = None
    eos: tuple[str, ...] = ()
    chat_template: ChatTemplate | None = None


@dataclass(frozen=True)
class Conventions:
    """What runtimes and bundles use: settled from flags, the checkpoint and the plugin's defaults."""

    start_token: str | None
    stop_tokens: tuple[str, ...]
    affixes: PromptTemplate = field(default_factory=PromptTemplate)
    chat_template: ChatTemplate | None = None


def find_tokenizer(directory: Path, prefer: tuple[str, ...] = TOKENIZER_FILES) -> Path | None:
    return next((directory / n for n in prefer if (directory / n).is_file()), None)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointConventionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointConventionError(f"{path}: expected a JSON object")
    return data


def _token_text(value) -> str | None:
    """tokenizer_config.json writes tokens as strings or as serialized AddedToken objects."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else [i for i in value if isinstance(i, int)]


def _template_text(directory: Path, tokenizer_config: dict) -> tuple[str, str] | None:
    """(Jinja source, where it came from): chat_template.jinja wins, as in transformers."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), str(jinja)
    where = f"{directory / 'tokenizer_config.json'} field 'chat_template'"
    value = tokenizer_config.get("chat_template")
    if isinstance(value, list):
        # Several named templates: the default one is what apply_chat_template uses.
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
        where += "[default]"
    if isinstance(value, str) and value:
        return value, where
    from_json = _read_json(directory / "chat_template.json").get("chat_template")
    if isinstance(from_json, str) and from_json:
        return from_json, str(directory / "chat_template.json")
    return None


def _adds_bos(tokenizer_json: Path, bos: str) -> bool | None:
    """Whether tokenizer.json's post-processor puts `bos` in front of plain text (None: it does not say)."""
    try:
        processor = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("post_processor")
    except (ValueError, OSError):
        return None
    processors = processor.get("processors", [processor]) if isinstance(processor, dict) else []
    for p in processors:
        if p.get("type") == "TemplateProcessing":
            first = (p.get("single") or [{}])[0]
            return first.get("SpecialToken", {}).get("id") == bos
    return False if processor is None or processors else None


def read_checkpoint_tokens(checkpoint: str | Path, tokenizer: str | Path | None = None) -> CheckpointTokens:
    """The token conventions in the checkpoint directory (or the directory of a checkpoint file).

    Every token the files name is checked against the tokenizer: a missing token or an id beyond the vocabulary
    raises CheckpointConventionError naming the file and the field, before any work is done with it.
    """
    from edge_models.runtime.tokenizer import load_tokenizer

    checkpoint = Path(checkpoint)
    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    tok_path = Path(tokenizer) if tokenizer else find_tokenizer(directory)
    tokenizer_config = _read_json(directory / "tokenizer_config.json")
    generation_config = _read_json(directory / "generation_config.json")
    model_config = _read_json(directory / "config.json")
    if tok_path is None:
        return CheckpointTokens(directory)
    tok = load_tokenizer(tok_path)

    def named(file: str, key: str) -> str | None:
        text = _token_text(tokenizer_config.get(key))
        if text is not None and tok.piece_to_id(text) is None:
            raise CheckpointConventionError(
                f"{directory / file} field {key!r}: {text!r} is not a token of {tok_path.name}"
            )
        return text

    def by_id(file: str, config: dict, key: str) -> list[str]:
        pieces = []
        for i in _ids(config.get(key)):
            if not 0 <= i < tok.vocab_size:
                raise CheckpointConventionError(
                    f"{directory / file} field {key!r}: id {i} is beyond the vocabulary of {tok_path.name} "
                    f"({tok.vocab_size} tokens)"
                )
            pieces.append(tok.id_to_piece(i))
        return pieces

    specials = {k: v for k in _SPECIAL_NAMES if (v := named("tokenizer_config.json", k)) is not None}
    bos = specials.get("bos_token")
    if bos is None and "bos_token" not in tokenizer_config:
        bos = next(iter(by_id("generation_config.json", generation_config, "bos_token_id")), None)
        bos = bos or next(iter(by_id("config.json", model_config, "bos_token_id")), None)
    eos = [specials["eos_token"]] if "eos_token" in specials else []
    eos += by_id("generation_config.json", generation_config, "eos_token_id")
    if not eos:
        eos = by_id("config.json", model_config, "eos_token_id")
    add_bos = tokenizer_config.get("add_bos_token")
    if not isinstance(add_bos, bool):
        add_bos = None
        if bos is not None:
            add_bos = _adds_bos(tok_path, bos) if tok_path.suffix == ".json" else True
    template = None
    found = _template_text(directory, tokenizer_config)
    if found is not None:
        template = ChatTemplate(found[0], found[1], specials)
        template.check()
    return CheckpointTokens(
        directory=directory,
        tokenizer=tok_path,
        bos=bos,
        add_bos=add_bos,
        eos=tuple(dict.fromkeys(eos)),
        chat_template=template,
    )


def resolve_conventions(
    checkpoint: CheckpointTokens | None,
    defaults: TokenizerDefaults | None,
    *,
    start_token: str | None = None,
    no_start_token: bool = False,
    stop_tokens: tuple[str, ...] = (),
    affixes: PromptTemplate | None = None,
) -> Conventions:
    """Flags beat the checkpoint, the checkpoint beats the plugin's defaults."""
    if no_start_token:
        start = None
    elif start_token is not None:
        start = start_token
    elif checkpoint is not None and checkpoint.add_bos is not None:
        start = checkpoint.bos if checkpoint.add_bos else None
    else:
        start = defaults.start_token if defaults else None
    stops = tuple(stop_tokens) or (checkpoint.eos if checkpoint and checkpoint.eos else ())
    stops = stops or (defaults.stop_tokens if defaults else ())
    jinja = checkpoint.chat_template if checkpoint and affixes is None else None
    if affixes is None:
        affixes = defaults.template if defaults and jinja is None else PromptTemplate()
    if jinja is not None:
        try:
            affixes = jinja.affixes()[1]
        except ChatTemplateError:
            affixes = PromptTemplate()
    return Conventions(start, stops, affixes, jinja)
