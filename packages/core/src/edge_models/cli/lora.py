"""`edge-models lora`: adapters for files converted with LoRA inputs."""

from __future__ import annotations

from pathlib import Path

import click

from edge_models import console
from edge_models.cli.base import friendly, logged


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
    from edge_models.layers.lora import parse_input_name
    from edge_models.lora import pack as pack_matrices
    from edge_models.lora import read_adapter, write_packed
    from edge_models.models import resolve_spec
    from edge_models.runtime import LiteRTModel

    spec = resolve_spec(model_name)
    lite = LiteRTModel(base, engine="interpreter")
    if not lite.lora_spec:
        raise ValueError(f"{base} has no LoRA inputs: convert it with --lora-rank R")
    slots = {n: parsed for n in lite.lora_spec if (parsed := parse_input_name(n))}
    layers = 1 + max(layer for layer, _, _ in slots.values())
    rank = next(lite.lora_spec[n][1] for n, (_, _, ab) in slots.items() if ab == "a")
    read = read_adapter(adapter, spec.tensor_names, max(layers, spec.config.num_layers))
    matrices = pack_matrices(read, lite.lora_spec)
    write_packed(matrices, output, str(adapter))
    console.out(f"wrote {output}: {len(read.modules)} projections, rank {read.rank} (file rank {rank})")
