"""`edge-models tokenizer ...`: tokenizer utilities."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models.io import console


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Tokenizer utilities (e.g. rebuild a SentencePiece model from a GGUF file)."""


@tokenizer_group.command("from-gguf")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("tokenizer.model"),
    show_default=True,
    help="where to write the SentencePiece model",
)
@click.option(
    "--verbatim-types",
    is_flag=True,
    help="keep every CONTROL token CONTROL (by default only bos/eos/pad/unk/... stay CONTROL; the others, "
    "e.g. <start_of_turn>, become USER_DEFINED so chat markers written as text encode to one token)",
)
def from_gguf(file: Path, output: Path, verbatim_types: bool) -> None:
    """Rebuild a SentencePiece tokenizer.model from the tokenizer metadata of a GGUF FILE."""
    from edge_models.io.files import WriteError
    from edge_models.loader.gguf_tokenizer import GGUFTokenizerError, write_sentencepiece_from_gguf

    try:
        out = write_sentencepiece_from_gguf(file, output, control_as_user_defined=not verbatim_types)
    except (GGUFTokenizerError, WriteError) as e:
        raise click.ClickException(str(e)) from None
    for line in _describe(out):
        console.out(line)


def _describe(path: Path) -> list[str]:
    """Vocabulary size, special tokens and piece-type counts of a SentencePiece model."""
    from collections import Counter

    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    model.ParseFromString(path.read_bytes())
    names = pb.ModelProto.SentencePiece.Type.Name
    counts = Counter(names(p.type).lower() for p in model.pieces)
    spec = model.trainer_spec
    lines = [f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", f"vocab size: {len(model.pieces)}"]
    specials = [
        f"{role}={model.pieces[i].piece!r} ({i})"
        for role, i in (("bos", spec.bos_id), ("eos", spec.eos_id), ("unk", spec.unk_id), ("pad", spec.pad_id))
        if i >= 0
    ]
    lines.append("special tokens: " + (", ".join(specials) or "none"))
    lines.append("piece types: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    user = [p.piece for p in model.pieces if p.type == pb.ModelProto.SentencePiece.USER_DEFINED]
    if user:
        shown = ", ".join(repr(p) for p in user[:8])
        lines.append(f"user-defined (matched whole in text): {shown}{', ...' if len(user) > 8 else ''}")
    norm = model.normalizer_spec
    lines.append(
        f"normalizer: {norm.name}, dummy prefix {'on' if norm.add_dummy_prefix else 'off'}, "
        f"byte fallback {'on' if spec.byte_fallback else 'off'}"
    )
    return lines
