"""Verbs about models: list, recipes, convert."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edge_models import console
from edge_models.cli.base import CHECKPOINT, UserError, cli, friendly, lengths, logged


@cli.command("list")
@click.option("--names", is_flag=True, help="only the names, one per line (for scripts)")
@click.option(
    "--cached", is_flag=True, help="instead: checkpoints in the local Hugging Face cache a registered model accepts"
)
@friendly
def list_models(names: bool, cached: bool) -> None:
    """Show every registered model and the plugin that provides it."""
    from edge_models.plugins import encoder_registry, registry, seq2seq_registry

    if cached:
        return _list_cached(names)
    entries = registry().entries() + encoder_registry().entries() + seq2seq_registry().entries()
    if names:
        for e in entries:
            console.out(e.spec.name)
        return
    if not entries:
        console.out("No models registered. Install a plugin, e.g. `pip install edge-models-gemma`.")
        return
    rows = [("name", "family", "params", "plugin", "description")]
    for e in entries:
        params = e.spec.config.num_parameters()
        rows.append((e.spec.name, e.spec.family, f"{params / 1e6:,.0f}M", e.provider, e.spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        console.out("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])


def _list_cached(names: bool) -> None:
    """The cache's complete snapshots whose architecture a registered model accepts: what `--checkpoint ORG/NAME`
    takes, under the name it takes."""
    from edge_models.hf.hub_cache import cached_checkpoints, format_size, hub_cache_dir
    from edge_models.plugins import encoder_registry, registry, seq2seq_registry

    cache = hub_cache_dir()
    registries = (registry(), encoder_registry(), seq2seq_registry())
    rows, others = [], 0
    for checkpoint in cached_checkpoints(cache):
        spec = _accepting(registries, checkpoint.architectures)
        if spec is None:
            others += 1
            continue
        architectures = ", ".join(checkpoint.architectures)
        rows.append((checkpoint.name, architectures, spec.name, format_size(checkpoint.size)))
    if names:
        for row in rows:
            console.out(row[0])
        return
    if rows:
        rows.insert(0, ("checkpoint", "architecture", "model", "size"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            console.out("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3].rjust(widths[3]))
    else:
        console.out(f"No checkpoint in the Hugging Face cache ({cache}) has an architecture a registered model takes.")
    if others:
        console.out(f"{others} other cached model(s) in {cache}: no registered model accepts their architecture.")


def _accepting(registries, architectures: tuple[str, ...]):
    """The spec of the first registry (decoders, encoders, encoder-decoders) that accepts `architectures`, or None."""
    from edge_models.plugins import UnknownModelError

    for reg in registries:
        try:
            return reg.for_architecture(list(architectures))
        except UnknownModelError:
            continue
    return None


@cli.command()
def recipes() -> None:
    """List quantization recipes."""
    from edge_models.quantize import COMPONENTS, DEFAULT_RECIPE, all_schemes

    for name, scheme in all_schemes().items():
        console.out(f"{name:<19} {scheme.description}")
    console.out(
        f"{'auto':<19} a scheme per block part (int8-gptq or int4-block32-gptq, and rows.K splits of a tied\n"
        f"{'':<19} embedding/LM head) chosen by measured sensitivity to meet --max-ppl-increase 3% or\n"
        f"{'':<19} --max-size 250MB at the least size; prints the recipe it chose"
    )
    console.out(
        "\nDefault of `convert`: int8-gptq (int8 without the model's tokenizer). -gptq schemes calibrate on a text\n"
        "shipped with edge-models, or --calibration FILE.\n"
        f"Mix per component ({', '.join(COMPONENTS)}); components not named get {DEFAULT_RECIPE};\n"
        "one block's part as layers.N.attention / layers.N.feedforward; the first K rows of a tied embedding/LM\n"
        "head as rows.K (tokenizers number frequent pieces first), e.g. on Gemma 3 270M\n"
        "  --quantize int8-gptq,embedding=int4-block32-gptq,lm_head=int4-block32-gptq,rows.65536=int8-gptq\n"
        "A per-component mix, e.g.\n"
        "  --quantize attention=int4-block32-gptq,feedforward=int4-block128-gptq,embedding=int8,lm_head=int8"
    )


@cli.command()
@click.argument("model")
@click.option(
    "--checkpoint",
    type=CHECKPOINT,
    help="HF directory, .safetensors, .bin/.pt or .gguf; or ORG/NAME[@REV] in the local Hugging Face cache",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="output .tflite [MODEL.tflite]")
@click.option(
    "--quantize",
    "recipe",
    default=None,
    help="recipe, per-component mix or auto (see `edge-models recipes`) [int8-gptq: int8 calibrated on shipped text]",
)
@click.option("--prefill", default="32,128", show_default=True, help="prefill signature lengths")
@click.option("--kv-cache", "kv_len", default=1024, show_default=True, help="KV cache length")
@click.option(
    "--decode-windows",
    default="256",
    show_default=True,
    help="extra decode signatures step_<W> reading only the first W cache slots ('' for none)",
)
@click.option(
    "--prefill-windows",
    default="256",
    show_default=True,
    help="extra prefill signatures fill_<N>_<W> reading only the first W cache slots ('' for none)",
)
@click.option(
    "--verify",
    "verify_lengths",
    default="8",
    show_default=True,
    help="verify_<K> signatures scoring K tokens at once, for speculative decoding ('' for none)",
)
@click.option(
    "--shortlist",
    type=click.IntRange(min=0),
    default=None,
    help="shortlist_<K> signatures: decode through an int4 copy of the LM head that ranks, then the top K scored "
    "exactly (faster greedy/top-k decoding; the .tflite grows by the copy, bundles leave it out; 0 for none) "
    "[64 where an 8-bit head is a quarter of the weights and the vocabulary is big, e.g. Gemma 3, Qwen 0.5B]",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="processes exporting the signatures at once (each ~1 GiB); 1 for the least memory",
)
@click.option("--tiny", is_flag=True, help="convert the plugin's tiny random config (no checkpoint)")
@click.option("--bundle", type=click.Path(path_type=Path), help="also write a .task bundle (needs edge-models-bundler)")
@click.option("--tokenizer", type=click.Path(exists=True, path_type=Path), help="tokenizer for --bundle")
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help="UTF-8 text for calibrated (-gptq) schemes and auto [the text shipped with edge-models]",
)
@click.option("--max-ppl-increase", help="with --quantize auto: e.g. 3% (perplexity on the calibration text)")
@click.option("--max-size", help="with --quantize auto: size of the stored weights, e.g. 250MB")
@click.option("--embed-lengths", help="encoders: embed_<N> signature lengths [32,128,256, up to the model's positions]")
@click.option("--lora-rank", type=click.IntRange(min=1), help="add LoRA inputs of this rank (see `edge-models lora`)")
@click.option("--lora-targets", help="projections with LoRA inputs, e.g. q_proj,v_proj [every projection]")
@click.option(
    "--merge-lora",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="a peft adapter directory folded into the weights before quantization",
)
@click.option("--encode-lengths", default="32,128", show_default=True, help="encoder-decoders: encode_<N> lengths")
@click.pass_context
@logged
@friendly
def convert(
    ctx,
    model,
    checkpoint,
    output,
    recipe,
    prefill,
    kv_len,
    decode_windows,
    prefill_windows,
    verify_lengths,
    shortlist,
    jobs,
    tiny,
    bundle,
    tokenizer,
    calibration,
    max_ppl_increase,
    max_size,
    embed_lengths,
    lora_rank,
    lora_targets,
    merge_lora,
    encode_lengths,
) -> None:
    """Convert MODEL (a registered name, or `auto`) to a .tflite: a decoder to prefill/decode signatures, an
    encoder to embed_<N> signatures."""
    from edge_models.convert import ExportSettings, parse_recipe
    from edge_models.convert import convert as run_convert
    from edge_models.encoders import find_encoder
    from edge_models.models import load_for_spec, random_model, resolve_spec
    from edge_models.seq2seq import find_seq2seq

    seq2seq = find_seq2seq(model, checkpoint)
    if seq2seq is not None:
        from edge_models.cli.encoders import convert_seq2seq_command

        if bundle or max_ppl_increase or max_size or recipe == "auto":
            raise UserError("encoder-decoders take --quantize RECIPE, --encode-lengths and --kv-cache")
        return convert_seq2seq_command(seq2seq, checkpoint, output, recipe, encode_lengths, kv_len, tiny)
    encoder = find_encoder(model, checkpoint)
    if encoder is not None:
        from edge_models.cli.encoders import convert_encoder_command

        if bundle or max_ppl_increase or max_size or recipe == "auto":
            raise UserError("encoders take --quantize RECIPE and --embed-lengths; bundles and auto are for decoders")
        return convert_encoder_command(encoder, checkpoint, output, recipe, embed_lengths, tiny)
    spec = resolve_spec(model, checkpoint)
    target = _auto_target(recipe, max_ppl_increase, max_size)
    recipe_obj = parse_recipe("int8-gptq" if target or recipe is None else recipe)
    settings = ExportSettings(
        prefill_lengths=lengths(prefill),
        kv_cache_len=kv_len,
        decode_windows=lengths(decode_windows) if decode_windows.strip() else (),
        prefill_windows=lengths(prefill_windows) if prefill_windows.strip() else (),
        verify_lengths=lengths(verify_lengths) if verify_lengths.strip() else (),
    )
    bundle_cmd = cli.commands.get("bundle") if bundle else None
    if bundle and bundle_cmd is None:
        raise UserError("--bundle needs the bundler plugin: pip install edge-models-bundler")
    if calibration is not None and not recipe_obj.is_calibrated and not target:
        raise UserError(
            f"--calibration is used by calibrated schemes only (e.g. int4-block32-gptq), not {recipe_obj.text!r}"
        )
    windows = None
    if recipe_obj.is_calibrated:
        # Checked before any conversion work: a bad text fails in a second, not after minutes.
        try:
            windows = _calibration_windows(spec, checkpoint, tokenizer, calibration, tiny)
        except UserError as e:
            if recipe is not None or target:
                raise
            console.err(f"{e.format_message()}; converting with int8 rounded to nearest instead")
            recipe_obj = parse_recipe("int8")
    weights = None
    if tiny:
        net = random_model(spec.tiny_config)
    elif checkpoint is None:
        raise UserError("give --checkpoint PATH, or --tiny for a random tiny model")
    else:
        console.err(f"loading {checkpoint} as {spec.name}")
        # The large weights are read one at a time while the file is written, not all up front.
        net, weights = load_for_spec(spec, checkpoint, deferred=True)
    if merge_lora is not None:
        from edge_models.lora import merge, merged_reader, read_adapter

        adapter = read_adapter(merge_lora, spec.tensor_names, net.config.num_layers)
        if weights is not None:
            weights = merged_reader(weights, adapter)
        else:
            merge(net, adapter)
        console.err(f"merged {merge_lora} into the weights ({len(adapter.modules)} projections, rank {adapter.rank})")
    if settings.verify_lengths and net.has_state:
        # The default adds verify_8; a model with state cannot undo rejected drafts (convert.export explains).
        console.err(f"no verify signatures: {spec.name}'s layers with state would keep rejected drafts")
        settings = dataclasses.replace(settings, verify_lengths=())
    if lora_rank:
        from edge_models.layers.lora import add_lora_slots, parse_targets

        if target:
            raise UserError("--lora-rank and --quantize auto do not combine")
        slots = add_lora_slots(net, lora_rank, parse_targets(lora_targets))
        console.err(f"LoRA inputs of rank {lora_rank} on {len(slots)} projections")
    output = output or Path(f"{spec.name}.tflite")
    token_files = checkpoint
    if bundle_cmd is not None:
        if tokenizer is None and _is_gguf(checkpoint):
            token_files = bundle.with_name(f"{bundle.stem}.tokenizer")
            console.err(f"rebuilding the tokenizer and its special tokens from {checkpoint.name} into {token_files}/")
            _gguf_token_files(checkpoint, token_files, spec, "bundles")
        # Settle the tokenizer and the checkpoint's conventions before minutes of conversion, not after.
        tokenizer = tokenizer or _bundle_tokenizer(token_files, bundle, spec)
    calibrated = None
    if target:
        from edge_models.quantize.auto import choose_recipe

        windows, held_out = _calibration_windows(spec, checkpoint, tokenizer, calibration, tiny, held_out=True)
        plan = choose_recipe(net, windows, target, weights, console.stage, held_out=held_out)
        console.err(plan.table())
        recipe_obj, calibrated = parse_recipe(plan.recipe), plan.calibrated
    if shortlist is None:
        from edge_models.layers.shortlist import default_k

        # Not beside a size budget (the copy is not in it) or LoRA inputs.
        shortlist = 0 if lora_rank or max_size else default_k(net, recipe_obj.scheme_for("lm_head").bits)
        if shortlist:
            console.err(
                f"adding shortlist_{shortlist} signatures: faster decoding in our runtime (bundles leave them out; "
                "--shortlist 0 for none)"
            )
    settings = dataclasses.replace(settings, shortlist=shortlist)
    run_convert(
        net, output, settings, recipe_obj, weights=weights, workers=jobs, calibration=windows, calibrated=calibrated
    )
    if bundle_cmd is not None:
        hf_dir = None if token_files is None or _is_gguf(token_files) else token_files
        notes = [f"recipe={recipe_obj.text}"]
        if merge_lora is not None:
            from edge_models.lora import describe_adapter

            notes.append(f"merged LoRA={describe_adapter(merge_lora)}")
        ctx.invoke(
            bundle_cmd,
            tflite=output,
            tokenizer=tokenizer,
            checkpoint=hf_dir,
            model=spec.name,
            output=bundle,
            notes=tuple(notes),
        )


def _auto_target(recipe: str | None, max_ppl_increase: str | None, max_size: str | None):
    from edge_models.quantize.auto import Target, parse_percent, parse_size

    if recipe != "auto":
        if max_ppl_increase or max_size:
            raise UserError("--max-ppl-increase and --max-size go with --quantize auto")
        return None
    return Target(
        max_ppl_increase=parse_percent(max_ppl_increase) if max_ppl_increase else None,
        max_size=parse_size(max_size) if max_size else None,
    )


def _calibration_windows(
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
    import tempfile

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
        raise UserError(f"{needed_by} need the model's tokenizer: give --tokenizer (none beside the checkpoint)")
    own = read_checkpoint_tokens(directory or found.parent, found)
    return load_tokenizer(found), resolve_conventions(own, spec.tokenizer).start_token


def _is_gguf(checkpoint: Path | None) -> bool:
    return checkpoint is not None and checkpoint.suffix.lower() == ".gguf"


def _gguf_token_files(gguf: Path, directory: Path, spec, needed_by: str) -> Path:
    """The GGUF's tokenizer and token conventions written into `directory` as an HF checkpoint's token files, so
    they are read (and checked) as any checkpoint's; the family's stop tokens join the file's where its vocabulary
    has them, as llama.cpp's own end-of-turn tokens do."""
    from edge_models.gguf_tokenizer import GGUFTokenizerError, write_token_files_from_gguf

    try:
        return write_token_files_from_gguf(gguf, directory, stop_tokens=spec.tokenizer.stop_tokens)
    except GGUFTokenizerError as e:
        raise UserError(f"{needed_by} need the model's tokenizer: {e}; give --tokenizer") from None


def _bundle_tokenizer(checkpoint: Path | None, bundle: Path, spec) -> Path:
    """The tokenizer for the bundle: beside the checkpoint (the file `bundle`'s format carries). The checkpoint's
    token files are read (and checked) here, before any conversion work."""
    from edge_models.hf import find_tokenizer, read_checkpoint_tokens, resolve_conventions

    directory = None if checkpoint is None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    task = bundle.suffix == ".task"
    prefer = ("tokenizer.model", "tokenizer.json") if task else ("tokenizer.json", "tokenizer.model")
    found = find_tokenizer(directory, prefer) if directory else None
    if found is None:
        raise UserError("--bundle needs the model's tokenizer: none beside the checkpoint; give --tokenizer")
    if task and found.suffix == ".json":
        raise UserError(
            f"{found}: a .task bundle carries only a SentencePiece tokenizer.model; bundle as .litertlm "
            f"(--bundle {bundle.with_suffix('.litertlm')}), which carries tokenizer.json"
        )
    conventions = resolve_conventions(read_checkpoint_tokens(directory, found), spec.tokenizer)
    if task and conventions.start_token is None:
        raise UserError(
            f"{directory}: the model has no start token, and a .task bundle requires one: bundle as .litertlm "
            f"(--bundle {bundle.with_suffix('.litertlm')})"
        )
    return found
