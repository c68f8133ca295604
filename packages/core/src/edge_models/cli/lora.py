"""`edge-models lora`: adapters for files converted with LoRA inputs."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models.cli.base import friendly, logged
from edge_models.io import console


@click.group("lora")
def lora_group() -> None:
    """Pack peft LoRA adapters for a file converted with --lora-rank."""


@lora_group.command("pack")
@click.argument("adapter", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--base",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the .tflite converted with --lora-rank that will run it",
)
@click.option("--model", "model_name", required=True, help="registered model (its checkpoint names map the adapter)")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="adapter file (LiteRT-LM's LoRA format, e.g. adapter.bin)",
)
@logged
@friendly
def pack(adapter, base, model_name, output) -> None:
    """Check ADAPTER (adapter_config.json + adapter_model.safetensors) against BASE and write its matrices in the
    order, shape and dtype BASE's LoRA inputs take (zero-padded to its rank, alpha/r folded in)."""
    from edge_models.kinds.decoder import resolve_spec
    from edge_models.loader.peft_adapter import pack as pack_matrices
    from edge_models.loader.peft_adapter import read_adapter, write_packed
    from edge_models.runtime import LiteRTModel
    from edge_models.runtime.lora_format import parse_input_name, rank_of

    spec = resolve_spec(model_name)
    lite = LiteRTModel(base, engine="interpreter")
    if not lite.lora_spec:
        raise ValueError(f"{base} has no LoRA inputs: convert it with --lora-rank R")
    layers = 1 + max(parsed[0] for n in lite.lora_spec if (parsed := parse_input_name(n)))
    read = read_adapter(adapter, spec.tensor_names, max(layers, spec.config.num_layers))
    matrices = pack_matrices(read, lite.lora_spec)
    write_packed(matrices, output, str(adapter))
    console.out(
        f"wrote {output}: {len(read.modules)} projections, rank {read.rank} (file rank {rank_of(lite.lora_spec)})"
    )


@lora_group.command("zeros")
@click.option(
    "--base",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="the .tflite or bundle converted with --lora-rank",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="adapter file to write")
@logged
@friendly
def zeros(base, output) -> None:
    """Write an all-zero adapter for BASE: the base model itself. LiteRT-LM leaves a file's LoRA inputs unset when a
    session has no adapter; give it this one for the base model."""
    from edge_models.io.files import write_atomically
    from edge_models.runtime import LiteRTModel, read_bundle
    from edge_models.runtime.bundles import BUNDLE_SUFFIXES
    from edge_models.runtime.lora_format import rank_of, write_adapter_file, zero_adapter

    model = read_bundle(base).tflite if base.suffix in BUNDLE_SUFFIXES else base
    spec = LiteRTModel(model, engine="interpreter").lora_spec
    if not spec:
        raise ValueError(f"{base} has no LoRA inputs: convert it with --lora-rank R")
    write_atomically(
        output, lambda f: write_adapter_file(zero_adapter(spec), rank_of(spec), f, "zeros: the base model")
    )
    console.out(f"wrote {output}: {len(spec)} zero matrices, rank {rank_of(spec)}")
