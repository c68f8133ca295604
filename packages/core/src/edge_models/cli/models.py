"""Verbs about models: list, recipes, convert."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models.cli.base import CHECKPOINT, UserError, cli, friendly, lengths, logged
from edge_models.io import console


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
        "Models with per-layer inputs (Gemma 3n / 4): per_layer_table (the lookup) and per_layer_projections.\n"
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
    default="auto",
    show_default=True,
    help="extra decode signatures step_<W> reading only the first W cache slots ('' for none; auto: 256 where the "
    "KV cache is a real share of what a decode step reads, as on models under ~1B parameters)",
)
@click.option(
    "--prefill-windows",
    default="auto",
    show_default=True,
    help="extra prefill signatures fill_<N>_<W> reading only the first W cache slots ('' for none; auto: as above)",
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
@click.option(
    "--composites",
    is_flag=True,
    help="mark each RMSNorm as an odml.rms_norm composite, a boundary GPU/NPU delegates can fuse (CPU numbers "
    "unchanged)",
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
@logged
@friendly
def convert(
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
    composites,
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
    from edge_models.convert import ExportSettings
    from edge_models.convert.pipeline import convert_checkpoint, find_model
    from edge_models.quantize.auto import parse_percent, parse_size

    if tiny == (checkpoint is not None):
        raise UserError("give --checkpoint PATH, or --tiny for a random tiny model (not both)")
    kind, _ = find_model(model, checkpoint)
    settings = None
    if kind == "decoder":
        settings = ExportSettings(
            prefill_lengths=lengths(prefill),
            kv_cache_len=kv_len,
            decode_windows=None if decode_windows == "auto" else lengths(decode_windows),
            prefill_windows=None if prefill_windows == "auto" else lengths(prefill_windows),
            verify_lengths=lengths(verify_lengths),
            composites=composites,
        )
    elif composites:
        raise UserError("--composites applies to decoders only")
    result = convert_checkpoint(
        model,
        checkpoint,
        output,
        recipe=recipe,
        settings=settings,
        tiny=tiny,
        tokenizer=tokenizer,
        calibration_text=calibration,
        max_ppl_increase=parse_percent(max_ppl_increase) if max_ppl_increase else None,
        max_size=parse_size(max_size) if max_size else None,
        shortlist=shortlist,
        lora_rank=lora_rank,
        lora_targets=lora_targets,
        merge_lora=merge_lora,
        jobs=jobs,
        bundle=bundle,
        embed_lengths=lengths(embed_lengths) if embed_lengths else None,
        encode_lengths=lengths(encode_lengths),
        seq2seq_cache_len=kv_len,
    )
    if result.kind != "decoder":
        console.out(result.converted.summary())
