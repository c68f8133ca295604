"""The `edge-models` command. Plugins add verbs through the `register_commands` hook."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge_models.plugins import plugin_manager


class UserError(click.ClickException):
    """Errors a user can fix: printed as one line, exit code 1, no traceback."""


def _friendly(func):
    """Turn our own error types into clean CLI errors."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, LookupError, FileNotFoundError) as e:
            raise UserError(str(e)) from None

    return wrapper


def _lengths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None


@click.group()
@click.version_option(package_name="edge-models")
def cli() -> None:
    """Re-author, verify, quantize, convert and run LLMs for on-device inference."""


@cli.command("list")
@click.option("--names", is_flag=True, help="only the names, one per line (for scripts)")
@_friendly
def list_models(names: bool) -> None:
    """Show every registered model and the plugin that provides it."""
    from edge_models.plugins import registry

    entries = registry().entries()
    if names:
        for e in entries:
            click.echo(e.spec.name)
        return
    if not entries:
        click.echo("No models registered. Install a plugin, e.g. `pip install edge-models-gemma`.")
        return
    rows = [("name", "family", "params", "plugin", "description")]
    for e in entries:
        params = e.spec.config.num_parameters()
        rows.append((e.spec.name, e.spec.family, f"{params / 1e6:,.0f}M", e.provider, e.spec.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])


@cli.command()
def recipes() -> None:
    """List quantization recipes."""
    from edge_models.quantize import COMPONENTS, DEFAULT_RECIPE, all_schemes

    for name, scheme in all_schemes().items():
        click.echo(f"{name:<19} {scheme.description}")
    click.echo(
        f"{'auto':<19} a scheme per block part (int8-gptq or int4-block32-gptq) chosen by measured sensitivity to\n"
        f"{'':<19} meet --max-ppl-increase 3% or --max-size 250MB at the least size; prints the recipe it chose"
    )
    click.echo(
        "\nDefault of `convert`: int8-gptq (int8 without the model's tokenizer). -gptq schemes calibrate on a text\n"
        "shipped with edge-models, or --calibration FILE.\n"
        f"Mix per component ({', '.join(COMPONENTS)}); components not named get {DEFAULT_RECIPE};\n"
        "one block's part as layers.N.attention / layers.N.feedforward. E.g.\n"
        "  --quantize attention=int4-block32-gptq,feedforward=int4-block128-gptq,embedding=int8,lm_head=int8"
    )


@cli.command()
@click.argument("model")
@click.option(
    "--checkpoint", type=click.Path(exists=True, path_type=Path), help="HF directory, .safetensors, .bin/.pt or .gguf"
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
@click.pass_context
@_friendly
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
    jobs,
    tiny,
    bundle,
    tokenizer,
    calibration,
    max_ppl_increase,
    max_size,
) -> None:
    """Convert MODEL (a registered name, or `auto`) to a .tflite."""
    from edge_models.convert import ExportSettings, parse_recipe
    from edge_models.convert import convert as run_convert
    from edge_models.models import load_for_spec, random_model, resolve_spec

    spec = resolve_spec(model, checkpoint)
    target = _auto_target(recipe, max_ppl_increase, max_size)
    recipe_obj = parse_recipe("int8-gptq" if target or recipe is None else recipe)
    settings = ExportSettings(
        prefill_lengths=_lengths(prefill),
        kv_cache_len=kv_len,
        decode_windows=_lengths(decode_windows) if decode_windows.strip() else (),
        prefill_windows=_lengths(prefill_windows) if prefill_windows.strip() else (),
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
        except UserError:
            if recipe is not None or target:
                raise
            click.echo(
                "no tokenizer beside the checkpoint: converting with int8 rounded to nearest "
                "(give --tokenizer for the calibrated default, int8-gptq)",
                err=True,
            )
            recipe_obj = parse_recipe("int8")
    weights = None
    if tiny:
        net = random_model(spec.tiny_config)
    elif checkpoint is None:
        raise UserError("give --checkpoint PATH, or --tiny for a random tiny model")
    else:
        click.echo(f"loading {checkpoint} as {spec.name}", err=True)
        # The large weights are read one at a time while the file is written, not all up front.
        net, weights = load_for_spec(spec, checkpoint, deferred=True)
    output = output or Path(f"{spec.name}.tflite")
    if bundle_cmd is not None:
        # Settle the tokenizer before minutes of conversion, not after.
        tokenizer = tokenizer or _bundle_tokenizer(checkpoint, bundle)
    calibrated = None
    if target:
        from edge_models.quantize.auto import choose_recipe

        plan = choose_recipe(net, windows, target, weights, lambda m: click.echo(f"[edge-models] {m}", err=True))
        click.echo(plan.table(), err=True)
        recipe_obj, calibrated = parse_recipe(plan.recipe), plan.calibrated
    run_convert(
        net, output, settings, recipe_obj, weights=weights, workers=jobs, calibration=windows, calibrated=calibrated
    )
    if bundle_cmd is not None:
        ctx.invoke(bundle_cmd, tflite=output, tokenizer=tokenizer, model=spec.name, output=bundle)


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


def _calibration_windows(spec, checkpoint: Path | None, tokenizer: Path | None, text_file: Path | None, tiny: bool):
    """Token windows of the calibration text, in the checkpoint's own tokenizer."""
    from edge_models.quantize.calibration_data import (
        calibration_windows,
        read_calibration_text,
        tokenized_calibration,
    )

    if tiny:
        # A random tiny model has no tokenizer: its windows are the text's bytes folded into its vocabulary.
        vocab = spec.tiny_config.vocab_size
        text = read_calibration_text(text_file)
        return calibration_windows(text, lambda t: [b % vocab for b in t.encode()], None)
    tok = _checkpoint_tokenizer(checkpoint, tokenizer, "calibrated schemes")
    return tokenized_calibration(tok, spec.tokenizer.start_token, text_file)


def _checkpoint_tokenizer(checkpoint: Path | None, tokenizer: Path | None, needed_by: str):
    """`tokenizer`, or the one beside the checkpoint, or one rebuilt from a GGUF's metadata."""
    import tempfile

    from edge_models.runtime import load_tokenizer

    if tokenizer is None and checkpoint is not None and checkpoint.suffix == ".gguf":
        from edge_models.gguf_tokenizer import write_sentencepiece_from_gguf

        with tempfile.TemporaryDirectory() as tmp:
            return load_tokenizer(write_sentencepiece_from_gguf(checkpoint, Path(tmp) / "tokenizer.model"))
    directory = None if checkpoint is None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    found = tokenizer or next(
        (directory / n for n in ("tokenizer.model", "tokenizer.json") if directory and (directory / n).exists()),
        None,
    )
    if found is None:
        raise UserError(f"{needed_by} need the model's tokenizer: give --tokenizer (none beside the checkpoint)")
    return load_tokenizer(found)


def _bundle_tokenizer(checkpoint: Path | None, bundle: Path) -> Path:
    """The tokenizer beside the checkpoint, or one rebuilt from a GGUF's metadata."""
    if checkpoint is not None and checkpoint.suffix == ".gguf":
        from edge_models.gguf_tokenizer import write_sentencepiece_from_gguf

        out = bundle.with_name(f"{bundle.stem}.tokenizer.model")
        click.echo(f"rebuilding the tokenizer from {checkpoint.name} into {out}", err=True)
        return write_sentencepiece_from_gguf(checkpoint, out)
    directory = None if checkpoint is None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    if directory is not None and (directory / "tokenizer.model").exists():
        return directory / "tokenizer.model"
    raise UserError("--bundle needs --tokenizer (no tokenizer.model beside the checkpoint)")


@cli.command()
@click.argument("model")
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), help="HF directory or .gguf file")
@click.option("--tiny", is_flag=True, help="verify on a tiny random checkpoint of MODEL (no download)")
@click.option("--prompt", "prompts", multiple=True, help="prompt text (repeatable); needs a tokenizer")
@click.option("--tokens", "new_tokens", default=32, show_default=True, help="greedy tokens compared per prompt")
@click.option("--atol", default=None, type=float, help="max abs logit difference allowed [1e-4 x logit scale]")
@_friendly
def verify(model, checkpoint, tiny, prompts, new_tokens, atol) -> None:
    """Compare our MODEL with transformers' reference on the same checkpoint."""
    import tempfile

    from edge_models.verify import verify_checkpoint

    if tiny == (checkpoint is not None):
        raise UserError("give exactly one of --checkpoint PATH and --tiny")
    with tempfile.TemporaryDirectory() as tmp:
        if tiny:
            from edge_models.plugins import registry
            from edge_models.testing import tiny_checkpoint

            checkpoint = tiny_checkpoint(registry().get(model), Path(tmp) / model)
        report = verify_checkpoint(model, checkpoint, prompts=list(prompts), new_tokens=new_tokens, atol=atol)
    click.echo(report.table())
    if not report.passed:
        raise SystemExit(1)


@cli.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tokenizer",
    type=click.Path(exists=True, path_type=Path),
    help="tokenizer.model or tokenizer.json (not needed for .task)",
)
@click.option("--model", "model_name", help="registered model for stop tokens and chat template")
@click.option("--prompt", required=True)
@click.option("--max-tokens", default=128, show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 means greedy")
@click.option("--top-k", default=0, show_default=True)
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--min-p", default=0.0, show_default=True)
@click.option("--repetition-penalty", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--chat", is_flag=True, help="wrap the prompt in the model's chat template")
@click.option("--stop-token", "stop_tokens", multiple=True, help="extra stop token (repeatable)")
@_friendly
def generate(
    file,
    tokenizer,
    model_name,
    prompt,
    max_tokens,
    temperature,
    top_k,
    top_p,
    min_p,
    repetition_penalty,
    seed,
    chat,
    stop_tokens,
) -> None:
    """Generate text from a .tflite or .task FILE, streamed to stdout."""
    from edge_models.runtime import Generator, SamplerConfig

    gen = Generator.open(file, tokenizer=tokenizer, model=model_name, extra_stop_tokens=stop_tokens)
    sampler = SamplerConfig(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty, seed=seed
    )
    for piece in gen.stream(prompt, max_tokens=max_tokens, sampler=sampler, chat=chat):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    click.echo(gen.last_stats.summary(), err=True)


@cli.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--decode-tokens", default=64, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option(
    "--compare-torch", "torch_model", default=None, help="registered model name: run PyTorch eager side by side"
)
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), help="weights for --compare-torch")
@click.option("--tiny", is_flag=True, help="--compare-torch on the model's tiny config (random weights)")
@click.option(
    "--engine",
    type=click.Choice(["compiled", "interpreter", "both"]),
    default="compiled",
    show_default=True,
    help="LiteRT CompiledModel with in-place KV buffers, or the plain signature-runner loop",
)
@_friendly
def bench(file, decode_tokens, threads, torch_model, checkpoint, tiny, engine) -> None:
    """Prefill/decode tokens/s, time to first token, peak RSS and size of a .tflite or .task.

    Without --checkpoint, --compare-torch runs the model's published shape with random weights."""
    from edge_models.bench import bench_tflite, bench_torch, format_table

    engines = ["compiled", "interpreter"] if engine == "both" else [engine]
    rows = [bench_tflite(file, decode_tokens=decode_tokens, threads=threads, engine=e) for e in engines]
    if torch_model:
        rows.append(
            bench_torch(torch_model, checkpoint, rows[0], decode_tokens=decode_tokens, threads=threads, tiny=tiny)
        )
    click.echo(format_table(rows))


DEBUG_PROMPT = "The river carried the boat past three villages before the sun went down."


@cli.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), required=True, help="the fp32 reference")
@click.option("--model", "model_name", default="auto", show_default=True, help="registered model name, or auto")
@click.option("--prompt", default=DEBUG_PROMPT, show_default=True, help="text run through both")
@click.option("--tokenizer", type=click.Path(exists=True, path_type=Path), help="[beside the checkpoint]")
@_friendly
def debug(file, checkpoint, model_name, prompt, tokenizer) -> None:
    """Per decoder block: how far FILE's hidden state is from the PyTorch model on CHECKPOINT."""
    from edge_models.debug import compare_blocks, format_report
    from edge_models.models import load_for_spec, resolve_spec

    spec = resolve_spec(model_name, checkpoint)
    tok = _checkpoint_tokenizer(checkpoint, tokenizer, "debug prompts")
    start = tok.piece_to_id(spec.tokenizer.start_token) if spec.tokenizer.start_token else None
    tokens = ([] if start is None else [start]) + tok.encode(prompt)
    model = load_for_spec(spec, checkpoint).eval()
    click.echo(f"{file.name} vs {spec.name} fp32 on {len(tokens)} tokens")
    click.echo(format_report(compare_blocks(file, model, tokens)))


def _add_builtin_groups() -> None:
    from edge_models.cli_tokenizer import tokenizer_group

    cli.add_command(tokenizer_group)


def _load_plugin_commands() -> None:
    plugin_manager().hook.register_commands(cli=cli)


def main() -> None:
    _add_builtin_groups()
    _load_plugin_commands()
    cli()


if __name__ == "__main__":
    main()
