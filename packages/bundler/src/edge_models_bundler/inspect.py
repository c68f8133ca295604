"""A human-readable description of a `.task` bundle: entries, metadata, signatures, tokenizer."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from edge_models.formats.task import NORMALIZATION_BYTES_TO_UNICODE, read_task
from edge_models.runtime.bundles import NOTES_ENTRY


def _sizes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def describe_task(path: str | Path) -> str:
    """Text for `edge-models bundle inspect`; raises TaskFormatError for an unreadable bundle."""
    bundle = read_task(path)
    lines = [f"{bundle.path}", "", "entries:"]
    for e in bundle.entries.values():
        lines.append(f"  {e.name:<28} {_sizes(e.size):>12}  offset {e.offset}{'' if e.aligned else '  (NOT aligned)'}")

    p = bundle.params
    lines += ["", "metadata (LlmParameters):"]
    if p.start_token is not None:
        lines.append(f"  start_token        {p.start_token!r}")
    if p.start_token_id is not None:
        lines.append(f"  start_token_id     {p.start_token_id}")
    lines.append(f"  stop_tokens        {list(p.stop_tokens)!r}")
    if p.vocab_size:
        lines.append(f"  vocab_size         {p.vocab_size}")
    if p.input_output_normalizations:
        names = [
            "BYTES_TO_UNICODE" if n == NORMALIZATION_BYTES_TO_UNICODE else str(n) for n in p.input_output_normalizations
        ]
        lines.append(f"  normalizations     {names}")
    if p.system_prompt:
        lines.append(f"  system_prompt      {p.system_prompt!r}")
    for f in fields(p.prompt_template):
        value = getattr(p.prompt_template, f.name)
        if value:
            lines.append(f"  {f.name:<18} {value!r}")
    for role in ("user", "system", "model", "end"):
        token = getattr(p, f"{role}_role_token")
        if token is not None:
            lines.append(f"  {role}_role_token{' ' * (8 - len(role))}{token!r}")
    for number, raw in p.unknown_fields:
        lines.append(f"  field {number:<12} ({len(raw)} bytes, not decoded)")
    if NOTES_ENTRY in bundle:
        lines += ["", f"conversion notes ({NOTES_ENTRY}):"]
        lines += [f"  {key:<18} {value}" for key, value in json.loads(bundle.read(NOTES_ENTRY)).items()]

    lines += ["", "model (TF_LITE_PREFILL_DECODE):"]
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=bundle.tflite)
        for name in sorted(it.get_signature_list()):
            runner = it.get_signature_runner(name)
            lines.append(f"  signature {name}")
            for kind, details in (("in ", runner.get_input_details()), ("out", runner.get_output_details())):
                for tensor, d in details.items():
                    lines.append(f"    {kind} {tensor:<16} {d['dtype'].__name__:<8} {[int(x) for x in d['shape']]}")
    except Exception as e:  # noqa: BLE001 - show what we can of a broken bundle
        lines.append(f"  cannot load: {e}")

    lines += ["", "tokenizer (TOKENIZER_MODEL):"]
    try:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(bundle.tokenizer_model)
        lines.append(f"  SentencePiece, {sp.GetPieceSize()} pieces")
        special = [
            (i, sp.IdToPiece(i))
            for i in range(sp.GetPieceSize())
            if sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i) or _user_defined(sp, i)
        ]
        shown = ", ".join(f"{i}={piece!r}" for i, piece in special[:20])
        more = f" (+{len(special) - 20} more)" if len(special) > 20 else ""
        lines.append(f"  special pieces: {shown}{more}")
    except Exception as e:  # noqa: BLE001 - sentencepiece raises bare errors for a bad model
        lines.append(f"  cannot load as SentencePiece: {e}")
    return "\n".join(lines)


def _user_defined(sp, i: int) -> bool:
    # The Python binding has no IsUserDefined; user-defined specials look like <name>.
    piece = sp.IdToPiece(i)
    return piece.startswith("<") and piece.endswith(">") and len(piece) > 2


def describe_litertlm(path: str | Path) -> str:
    """Text for `edge-models bundle inspect` on a .litertlm; raises BundleFormatError for an unreadable file."""
    from edge_models.runtime.bundles import read_bundle

    b = read_bundle(path)
    lines = [str(b.path), "", "sections:"]
    lines += [f"  {name:<28} {_sizes(size):>12}" for name, size in b.sections]
    lines += ["", "metadata (LlmMetadata):"]
    lines.append(f"  start_token        {b.start_token!r}" if b.start_token else "  start_token        none")
    lines.append(f"  stop_tokens        {list(b.stop_tokens)!r}")
    for f in fields(b.affixes):
        value = getattr(b.affixes, f.name)
        if value:
            lines.append(f"  {f.name:<18} {value!r}")
    if b.chat_template is not None:
        lines.append(f"  jinja template     {len(b.chat_template.text):,} characters")
        hello = b.chat_template.render([{"role": "user", "content": "Hello"}])
        lines.append(f"  renders 'Hello' as {hello!r}")
    if b.self_test is not None:
        lines.append(f"  self-test          {b.self_test['prompt']!r}, {len(b.self_test['tokens'])} tokens")
    for key, value in b.notes.items():
        lines.append(f"  {key:<18} {value}")
    lines += ["", "tokenizer:", f"  {type(b.tokenizer).__name__}, {b.tokenizer.vocab_size} tokens"]
    return "\n".join(lines)
