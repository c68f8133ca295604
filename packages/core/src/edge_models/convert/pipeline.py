"""The conversion pipeline as one function: a registered model (or `auto`) and its checkpoint to a `.tflite`, and
on request a bundle beside it. The CLI's `convert`, the demo and the nox sessions all go through
`convert_checkpoint`; its keyword arguments mean what `edge-models convert`'s options say."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from edge_models.convert.converter import ConvertResult
from edge_models.convert.export import ExportSettings
from edge_models.io import console
from edge_models.spec import BundleRequest

Progress = Callable[[str], None]


class PipelineError(ValueError):
    """Options that do not go together, or a checkpoint that lacks what they need: one line for the user."""


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What `convert_checkpoint` wrote: the converted file, and the bundle when one was asked for."""

    kind: str  # "decoder", "encoder" or "seq2seq"
    converted: ConvertResult
    bundle: Path | None = None
    recipe_table: str | None = None  # `--quantize auto`: the choice per block part, as a printable table


def convert_checkpoint(
    model: str,
    checkpoint: str | Path | None = None,
    output: str | Path | None = None,
    *,
    recipe: str | None = None,
    settings: ExportSettings | None = None,
    tiny: bool = False,
    tokenizer: Path | None = None,
    calibration_text: Path | None = None,
    max_ppl_increase: float | None = None,
    max_size: int | None = None,
    shortlist: int | None = None,
    lora_rank: int | None = None,
    lora_targets: str | None = None,
    merge_lora: Path | None = None,
    jobs: int = 2,
    bundle: Path | None = None,
    embed_lengths: tuple[int, ...] | None = None,
    encode_lengths: tuple[int, ...] = (32, 128),
    seq2seq_cache_len: int = 1024,
    progress: Progress | None = console.stage,
) -> PipelineResult:
    """Convert `model` (a registered name, or `auto` to pick by the checkpoint's architecture) from `checkpoint`,
    or its tiny random config with `tiny`, to `output` [MODEL.tflite].

    Decoders get `settings`' signatures [prefill 32,128, KV cache 1024, windows 256 where they pay, no verify];
    windows given as None in `settings` are added where they pay (`convert.export.windows_pay`); `recipe` defaults
    to int8 calibrated on the text shipped with edge-models (int8 rounded to nearest where no tokenizer is at
    hand); `recipe="auto"` chooses a scheme per block part for `max_ppl_increase` (a fraction, 0.03 for 3 %) and/or
    `max_size` (bytes). `shortlist` None adds the default shortlist signatures where they pay. `bundle` also writes a
    `.task`/`.litertlm` through the installed bundler plugin. Encoders take `embed_lengths`, encoder-decoders
    `encode_lengths` and `seq2seq_cache_len` (their decoder's KV cache).
    """
    checkpoint = None if checkpoint is None else Path(checkpoint)
    output = None if output is None else Path(output)
    if tiny == (checkpoint is not None):
        raise PipelineError("give exactly one of a checkpoint and tiny=True (--checkpoint PATH or --tiny)")
    kind, spec = find_model(model, checkpoint)
    if kind != "decoder":
        if bundle or max_ppl_increase or max_size or recipe == "auto":
            raise PipelineError(
                "encoder-decoders take --quantize RECIPE, --encode-lengths and --kv-cache"
                if kind == "seq2seq"
                else "encoders take --quantize RECIPE and --embed-lengths; bundles and auto are for decoders"
            )
        converted = (
            _convert_seq2seq(spec, checkpoint, output, recipe, encode_lengths, seq2seq_cache_len, progress)
            if kind == "seq2seq"
            else _convert_encoder(spec, checkpoint, output, recipe, embed_lengths, progress)
        )
        return PipelineResult(kind, converted)
    return _convert_decoder(
        spec,
        checkpoint,
        output,
        recipe=recipe,
        settings=settings or ExportSettings(decode_windows=None, prefill_windows=None),
        tokenizer=tokenizer,
        calibration_text=calibration_text,
        max_ppl_increase=max_ppl_increase,
        max_size=max_size,
        shortlist=shortlist,
        lora_rank=lora_rank,
        lora_targets=lora_targets,
        merge_lora=merge_lora,
        jobs=jobs,
        bundle=bundle,
        progress=progress,
    )


def find_model(model: str, checkpoint: Path | None = None) -> tuple[str, object]:
    """(kind, spec) of `model`, a registered name or `auto` with the checkpoint's architectures: kind is
    "decoder", "encoder" or "seq2seq"."""
    from edge_models.kinds.decoder import resolve_spec
    from edge_models.kinds.encoder import find_encoder
    from edge_models.kinds.seq2seq import find_seq2seq

    seq2seq = find_seq2seq(model, checkpoint)
    if seq2seq is not None:
        return "seq2seq", seq2seq
    encoder = find_encoder(model, checkpoint)
    if encoder is not None:
        return "encoder", encoder
    return "decoder", resolve_spec(model, checkpoint)


def _convert_decoder(
    spec,
    checkpoint: Path | None,
    output: Path | None,
    *,
    recipe: str | None,
    settings: ExportSettings,
    tokenizer: Path | None,
    calibration_text: Path | None,
    max_ppl_increase: float | None,
    max_size: int | None,
    shortlist: int | None,
    lora_rank: int | None,
    lora_targets: str | None,
    merge_lora: Path | None,
    jobs: int,
    bundle: Path | None,
    progress: Progress | None,
) -> PipelineResult:
    from edge_models.convert.converter import convert
    from edge_models.kinds.decoder import load_for_spec, random_model
    from edge_models.quantize import parse_recipe

    say = progress or (lambda _msg: None)
    target = _auto_target(recipe, max_ppl_increase, max_size)
    chosen = parse_recipe("int8-gptq" if target or recipe is None else recipe)
    writer = bundle_writer() if bundle else None
    if calibration_text is not None and not chosen.is_calibrated and not target:
        raise PipelineError(
            f"--calibration is used by calibrated schemes only (e.g. int4-block32-gptq), not {chosen.text!r}"
        )
    tiny = checkpoint is None
    windows = None
    if chosen.is_calibrated:
        # Checked before any conversion work: a bad text fails in a second, not after minutes.
        try:
            windows = calibration_windows(spec, checkpoint, tokenizer, calibration_text, tiny)
        except PipelineError as e:
            if recipe is not None or target:
                raise
            console.err(f"{e}; converting with int8 rounded to nearest instead")
            chosen = parse_recipe("int8")
    weights = None
    if tiny:
        net = random_model(spec.tiny_config)
    else:
        say(f"loading {checkpoint} as {spec.name}")
        # The large weights are read one at a time while the file is written, not all up front.
        net, weights = load_for_spec(spec, checkpoint, deferred=True)
    notes = {"recipe": chosen.text}
    if merge_lora is not None:
        from edge_models.loader.peft_adapter import describe_adapter, merge, merged_reader, read_adapter

        adapter = read_adapter(merge_lora, spec.tensor_names, net.config.num_layers)
        if weights is not None:
            weights = merged_reader(weights, adapter)
        else:
            merge(net, adapter)
        notes["merged LoRA"] = describe_adapter(merge_lora)
        say(f"merged {merge_lora} into the weights ({len(adapter.modules)} projections, rank {adapter.rank})")
    if lora_rank:
        from edge_models.layers.lora import add_lora_slots, parse_targets

        if target:
            raise PipelineError("--lora-rank and --quantize auto do not combine")
        slots = add_lora_slots(net, lora_rank, parse_targets(lora_targets))
        say(f"LoRA inputs of rank {lora_rank} on {len(slots)} projections")
    output = output or Path(f"{spec.name}.tflite")
    token_files = checkpoint
    if writer is not None:
        if tokenizer is None and _is_gguf(checkpoint):
            token_files = bundle.with_name(f"{bundle.stem}.tokenizer")
            say(f"rebuilding the tokenizer and its special tokens from {checkpoint.name} into {token_files}/")
            _gguf_token_files(checkpoint, token_files, spec, "bundles")
        # Settle the tokenizer and the checkpoint's conventions before minutes of conversion, not after.
        tokenizer = tokenizer or bundle_tokenizer(token_files, bundle, spec)
    calibrated, table = None, None
    if target:
        from edge_models.quantize.auto import choose_recipe

        windows, held_out = calibration_windows(spec, checkpoint, tokenizer, calibration_text, tiny, held_out=True)
        plan = choose_recipe(net, windows, target, weights, say, held_out=held_out)
        table = plan.table()
        console.err(table)
        chosen, calibrated = parse_recipe(plan.recipe), plan.calibrated
        notes["recipe"] = chosen.text
    if settings.decode_windows is None or settings.prefill_windows is None:
        settings = settings.with_windows_where_they_pay(net, chosen)
        if not (settings.decode_windows or settings.prefill_windows):
            say(
                "no windowed signatures: the KV cache is too small a share of what a decode step reads for them to "
                "speed it up, and each signature costs load time"
            )
    if shortlist is None:
        from edge_models.layers.shortlist import default_k

        # Not beside a size budget (the copy is not in it) or LoRA inputs.
        shortlist = 0 if lora_rank or max_size else default_k(net, chosen.scheme_for("lm_head").bits)
        if shortlist:
            say(
                f"adding shortlist_{shortlist} signatures: faster decoding in our runtime (bundles leave them out; "
                "--shortlist 0 for none)"
            )
    settings = dataclasses.replace(settings, shortlist=shortlist)
    converted = convert(
        net, output, settings, chosen, progress, weights=weights, workers=jobs, calibration=windows,
        calibrated=calibrated,
    )  # fmt: skip
    if writer is None:
        return PipelineResult("decoder", converted, recipe_table=table)
    hf_dir = None if token_files is None or _is_gguf(token_files) else token_files
    request = BundleRequest(
        tflite=output, tokenizer=tokenizer, output=bundle, model=spec.name, checkpoint=hf_dir, notes=notes
    )
    return PipelineResult("decoder", converted, writer(request), table)


def bundle_writer() -> Callable[[BundleRequest], Path]:
    """The bundler plugin's writer (`register_bundle_writer`); a clear error when no bundler is installed."""
    from edge_models.plugins import bundle_writer as registered

    writer = registered()
    if writer is None:
        raise PipelineError("bundles need the bundler plugin: pip install edge-models-bundler")
    return writer


def _auto_target(recipe: str | None, max_ppl_increase: float | None, max_size: int | None):
    from edge_models.quantize.auto import Target

    if recipe != "auto":
        if max_ppl_increase or max_size:
            raise PipelineError("--max-ppl-increase and --max-size go with --quantize auto")
        return None
    return Target(max_ppl_increase=max_ppl_increase, max_size=max_size)


def calibration_windows(
    spec, checkpoint: Path | None, tokenizer: Path | None, text_file: Path | None, tiny: bool, held_out: bool = False
):
    """Token windows of the calibration text, in the checkpoint's own tokenizer (`held_out`: `auto`'s
    (calibration, held out) split of them)."""
    from edge_models.quantize.calibration_data import (
        calibration_windows,
        held_out_split,
        read_calibration_text,
        tokenized_calibration,
        tokenized_held_out_split,
    )

    if tiny:
        # A random tiny model has no tokenizer: its windows are the text's bytes folded into its vocabulary.
        vocab = spec.tiny_config.vocab_size
        text = read_calibration_text(text_file)
        windows = held_out_split if held_out else calibration_windows
        return windows(text, lambda t: [b % vocab for b in t.encode()], None)
    tok, start = checkpoint_tokenizer(checkpoint, tokenizer, "calibrated schemes", spec)
    return (tokenized_held_out_split if held_out else tokenized_calibration)(tok, start, text_file)


def checkpoint_tokenizer(checkpoint: Path | None, tokenizer: Path | None, needed_by: str, spec):
    """(tokenizer, start token) of the checkpoint: `tokenizer` or the one beside it, or one rebuilt from a GGUF's
    metadata; the start token as the checkpoint's token files (or the GGUF's metadata) say."""
    from edge_models.hf import find_tokenizer, read_checkpoint_tokens, resolve_conventions
    from edge_models.runtime import load_tokenizer

    if tokenizer is None and _is_gguf(checkpoint):
        with tempfile.TemporaryDirectory() as tmp:
            directory = _gguf_token_files(checkpoint, Path(tmp) / "tokenizer", spec, needed_by)
            own = read_checkpoint_tokens(directory)
            return load_tokenizer(directory / "tokenizer.model"), resolve_conventions(own, spec.tokenizer).start_token
    directory = None if checkpoint is None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    found = tokenizer or (find_tokenizer(directory) if directory else None)
    if found is None:
        raise PipelineError(f"{needed_by} need the model's tokenizer: give --tokenizer (none beside the checkpoint)")
    own = read_checkpoint_tokens(directory or found.parent, found)
    return load_tokenizer(found), resolve_conventions(own, spec.tokenizer).start_token


def _is_gguf(checkpoint: Path | None) -> bool:
    return checkpoint is not None and checkpoint.suffix.lower() == ".gguf"


def _gguf_token_files(gguf: Path, directory: Path, spec, needed_by: str) -> Path:
    """The GGUF's tokenizer and token conventions written into `directory` as an HF checkpoint's token files, so
    they are read (and checked) as any checkpoint's; the family's stop tokens join the file's where its vocabulary
    has them, as llama.cpp's own end-of-turn tokens do."""
    from edge_models.loader.gguf_tokenizer import GGUFTokenizerError, write_token_files_from_gguf

    try:
        return write_token_files_from_gguf(gguf, directory, stop_tokens=spec.tokenizer.stop_tokens)
    except GGUFTokenizerError as e:
        raise PipelineError(f"{needed_by} need the model's tokenizer: {e}; give --tokenizer") from None


def bundle_tokenizer(checkpoint: Path | None, bundle: Path, spec) -> Path:
    """The tokenizer for the bundle: beside the checkpoint (the file `bundle`'s format carries). The checkpoint's
    token files are read (and checked) here, before any conversion work."""
    from edge_models.hf import find_tokenizer, read_checkpoint_tokens, resolve_conventions

    directory = None if checkpoint is None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    task = bundle.suffix == ".task"
    prefer = ("tokenizer.model", "tokenizer.json") if task else ("tokenizer.json", "tokenizer.model")
    found = find_tokenizer(directory, prefer) if directory else None
    if found is None:
        raise PipelineError("--bundle needs the model's tokenizer: none beside the checkpoint; give --tokenizer")
    if task and found.suffix == ".json":
        raise PipelineError(
            f"{found}: a .task bundle carries only a SentencePiece tokenizer.model; bundle as .litertlm "
            f"(--bundle {bundle.with_suffix('.litertlm')}), which carries tokenizer.json"
        )
    conventions = resolve_conventions(read_checkpoint_tokens(directory, found), spec.tokenizer)
    if task and conventions.start_token is None:
        raise PipelineError(
            f"{directory}: the model has no start token, and a .task bundle requires one: bundle as .litertlm "
            f"(--bundle {bundle.with_suffix('.litertlm')})"
        )
    return found


def _convert_encoder(spec, checkpoint: Path | None, output: Path | None, recipe, lengths, progress) -> ConvertResult:
    from edge_models.convert.encoder import convert_encoder
    from edge_models.kinds.encoder import load_encoder_for_spec, random_encoder

    model = _loaded(spec, checkpoint, random_encoder, load_encoder_for_spec, progress)
    output = output or Path(f"{spec.name}.tflite")
    result = convert_encoder(model, output, lengths, recipe or "int8", progress)
    copy_tokenizer(checkpoint, output, progress)
    return result


def _convert_seq2seq(spec, checkpoint, output, recipe, lengths, cache_len: int, progress) -> ConvertResult:
    from edge_models.convert.seq2seq import convert_seq2seq
    from edge_models.kinds.seq2seq import load_seq2seq_for_spec, random_seq2seq

    model = _loaded(spec, checkpoint, random_seq2seq, load_seq2seq_for_spec, progress)
    output = output or Path(f"{spec.name}.tflite")
    result = convert_seq2seq(model, output, lengths, cache_len, recipe or "int8", progress)
    copy_tokenizer(checkpoint, output, progress)
    return result


def _loaded(spec, checkpoint: Path | None, random, load, progress):
    """`spec`'s tiny config with random weights (no checkpoint), or the checkpoint loaded."""
    if checkpoint is None:
        return random(spec.tiny_config)
    if progress:
        progress(f"loading {checkpoint} as {spec.name}")
    return load(spec, checkpoint)


def copy_tokenizer(checkpoint: Path | None, output: Path, progress: Progress | None = None) -> None:
    """The checkpoint's tokenizer beside the converted file, where `embed` and `generate` look for it."""
    if checkpoint is None or not checkpoint.is_dir():
        return
    for name in ("tokenizer.json", "spiece.model", "tokenizer.model", "tokenizer_config.json"):
        source, target = checkpoint / name, output.parent / name
        if source.is_file() and not target.exists():
            target.write_bytes(source.read_bytes())
            if progress:
                progress(f"copied {name} beside it")
