"""Every check a bundle must pass before it is written (issue 7), each with a message a user can act on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_models.runtime.tokenizer import SentencePieceTokenizer, TokenizerError
from edge_models.tflite.checks import TFLiteCheckError, TFLiteInfo, check_tflite

from edge_models_bundler.options import BundleOptions


class BundleError(ValueError):
    """A bundle cannot be written or does not pass its checks; the message lists every problem."""

    def __init__(self, problems: list[str], warnings: list[str] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__(
            "\n".join(self.problems)
            if len(self.problems) == 1
            else f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems)
        )


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the bundle does differently from its inputs, for the user
    tflite: TFLiteInfo | None = None
    tokenizer_pieces: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_failed(self) -> None:
        if self.problems:
            raise BundleError(self.problems, self.warnings)


# Text that looks like a template placeholder: MediaPipe templates are literal prefixes/suffixes.
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{[A-Za-z_]*\}|%s")
# Text that looks like a special token, e.g. <start_of_turn> or <|user|>.
_SPECIAL = re.compile(r"<\|?[A-Za-z_][A-Za-z0-9_.-]*\|?>")

_TEMPLATE_FLAGS = {
    "user_prefix": "--prompt-prefix-user",
    "user_suffix": "--prompt-suffix-user",
    "model_prefix": "--prompt-prefix-model",
    "model_suffix": "--prompt-suffix-model",
    "system_prefix": "--prompt-prefix-system",
    "system_suffix": "--prompt-suffix-system",
}


def load_sentencepiece(data: bytes, source: str, report: Report) -> SentencePieceTokenizer | None:
    if source.endswith(".json"):
        report.problems.append(
            f"tokenizer {source}: a .task bundle carries only a SentencePiece .model; "
            "HF tokenizer.json files go into .litertlm bundles (-o NAME.litertlm)"
        )
        return None
    try:
        tok = SentencePieceTokenizer(data, source)
    except TokenizerError as e:
        report.problems.append(f"tokenizer {e}: the tokenizer must load as SentencePiece")
        return None
    report.tokenizer_pieces = tok.vocab_size
    return tok


def check_tokens(options: BundleOptions, piece_to_id, source: str, report: Report) -> None:
    """Start and stop tokens must each be one piece of the vocabulary."""
    if not options.stop_tokens:
        report.problems.append("no stop token: give at least one --stop-token, or generation never ends")
    named = [("start token", options.start_token)] if options.start_token is not None else []
    named += [("stop token", t) for t in options.stop_tokens]
    for what, token in named:
        if not token:
            report.problems.append(f"{what} is empty")
        elif piece_to_id(token) is None:
            report.problems.append(f"{what} {token!r} is not a single piece of the vocabulary of {source}")
    seen = set()
    for token in options.stop_tokens:
        if token in seen:
            report.warnings.append(f"stop token {token!r} is given twice")
        seen.add(token)


def check_template(options: BundleOptions, piece_to_id, report: Report) -> None:
    t = options.template
    if options.system_prompt and (t.system_prefix or t.system_suffix):
        report.problems.append(
            "--system-prompt and --prompt-prefix-system/--prompt-suffix-system are mutually exclusive "
            "(a fixed session prompt, or affixes around a system message given at run time)"
        )
    texts = {name: getattr(t, name) for name in _TEMPLATE_FLAGS} | {"system_prompt": options.system_prompt}
    for name, text in texts.items():
        m = _PLACEHOLDER.search(text)
        if m:
            flag = _TEMPLATE_FLAGS.get(name, "--system-prompt")
            report.problems.append(
                f"{flag} contains the placeholder {m.group()!r}: .task templates are literal text around the "
                "prompt; pass the text before the placeholder as the prefix and the text after it as the suffix"
            )
        if piece_to_id is None:
            continue
        for special in _SPECIAL.findall(text):
            if piece_to_id(special) is None:
                report.warnings.append(
                    f"{_TEMPLATE_FLAGS.get(name, '--system-prompt')} mentions {special!r}, which is not one piece "
                    "of the vocabulary: it will be tokenized as plain text"
                )
    if t.model_suffix and piece_to_id is not None:
        first = _SPECIAL.match(t.model_suffix)
        if first and first.group() not in options.stop_tokens:
            report.warnings.append(
                f"the model's turn ends with {first.group()!r} (--prompt-suffix-model) but it is not a stop token: "
                "generation may run past the end of the turn"
            )
    if (t.model_prefix or t.model_suffix) and not (t.user_prefix or t.user_suffix):
        report.warnings.append(
            "model affixes without user affixes: the deprecated single template that older MediaPipe runtimes "
            "read will not contain the model prefix"
        )


def chat_starts_with(options: BundleOptions) -> bool:
    """Whether the chat template writes the start token at the beginning of a conversation itself."""
    if options.chat_template is None or options.start_token is None:
        return options.start_token is not None
    text = options.chat_template.render([{"role": "user", "content": "Hello"}])
    return text.startswith(options.start_token)


def check_task_chat(options: BundleOptions, report: Report) -> None:
    """What a `.task` can carry of the checkpoint's chat conventions: a start token, fixed affixes."""
    if options.start_token is None:
        report.problems.append(
            "the model has no start token (its tokenizer adds none), and a .task bundle requires one: bundle as "
            ".litertlm (-o NAME.litertlm), which allows none, or give --start-token"
        )
        return
    if options.chat_template is None:
        return
    from edge_models.hf import ChatTemplateError

    t = options.template
    try:
        preamble, _ = options.chat_template.affixes()
    except ChatTemplateError as e:
        if not (t.user_prefix or t.user_suffix or t.model_prefix):
            report.problems.append(
                f"{e}. A .task carries only such fixed text: bundle as .litertlm (-o NAME.litertlm), which "
                "carries the Jinja template, or give the --prompt-* affixes"
            )
        return
    if preamble not in ("", options.start_token):
        report.warnings.append(
            f"the chat template opens every conversation with {preamble!r}, which a .task cannot carry besides "
            "the start token; .litertlm carries the whole template"
        )
    if not chat_starts_with(options):
        report.warnings.append(
            f"MediaPipe puts the start token {options.start_token!r} before every chat; this model's chat template "
            "does not, so chats differ from transformers' by that token (.litertlm follows the template)"
        )


def check_vocab(pieces: int | None, info: TFLiteInfo | None, report: Report) -> None:
    if pieces is None or info is None:
        return
    if pieces > info.vocab_size:
        report.problems.append(
            f"the tokenizer has {pieces} pieces but the model's logits have {info.vocab_size}: ids past "
            f"{info.vocab_size - 1} could never be produced and would be out of range as inputs; "
            "tokenizer and model do not belong together"
        )
    elif pieces < info.vocab_size:
        report.warnings.append(
            f"the tokenizer has {pieces} pieces and the logits {info.vocab_size} (padded embedding?); "
            f"the runtime must never emit ids {pieces}..{info.vocab_size - 1}"
        )


def check_model(tflite: Path | str, report: Report, interpreter=None) -> None:
    try:
        report.tflite = check_tflite(tflite, interpreter=interpreter)
    except TFLiteCheckError as e:
        report.problems.append(str(e))
        return
    check_lora(report.tflite.lora_inputs, report)


def check_lora(inputs: dict[str, tuple[int, ...]], report: Report) -> None:
    """LoRA inputs the runtimes can bind: LiteRT-LM fills only the attention ones it recognises by name, and takes
    adapters only at some ranks; slots it cannot fill would drop an adapter's changes without a word."""
    from edge_models.tflite.lora import LITERT_LM_RANKS, LITERT_LM_TARGETS, parse_input_name, rank_of

    if not inputs:
        return
    slots = {name: parse_input_name(name) for name in inputs}
    unbound = sorted({s[1] if s else name for name, s in slots.items() if not s or s[1] not in LITERT_LM_TARGETS})
    if unbound:
        report.problems.append(
            f"the model has LoRA inputs on {', '.join(unbound)}, which LiteRT-LM does not bind (it binds "
            f"{', '.join(LITERT_LM_TARGETS)}): an adapter's changes there would be dropped in the bundle. Convert "
            f"with --lora-targets {','.join(LITERT_LM_TARGETS)} (or a subset), or keep this file for edge-models' "
            "runtime"
        )
    rank = rank_of(inputs)
    if rank not in LITERT_LM_RANKS:
        report.warnings.append(
            f"LoRA rank {rank}: LiteRT-LM 0.18 takes adapters only on files of rank "
            f"{' or '.join(map(str, LITERT_LM_RANKS))}, and leaves the LoRA inputs unset without one"
        )
    else:
        report.warnings.append(
            "LiteRT-LM leaves LoRA inputs unset when a session has no adapter: give every session one (for the base "
            "model, `edge-models lora zeros --base FILE -o zeros.bin`)"
        )


def validate_inputs(tflite: Path, tokenizer: Path, options: BundleOptions) -> Report:
    """All checks for `bundle` on the files it is given; nothing is written."""
    report = Report()
    piece_to_id = None
    if not tokenizer.is_file():
        report.problems.append(f"tokenizer {tokenizer}: no such file")
    else:
        tok = load_sentencepiece(tokenizer.read_bytes(), str(tokenizer), report)
        if tok is not None:
            piece_to_id = tok.piece_to_id
            check_tokens(options, piece_to_id, str(tokenizer), report)
    check_template(options, piece_to_id, report)
    check_model(tflite, report)
    check_vocab(report.tokenizer_pieces, report.tflite, report)
    return report
