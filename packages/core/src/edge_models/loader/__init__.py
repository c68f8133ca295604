"""Checkpoint loading: safetensors (single or sharded), .bin/.pt and GGUF."""

from edge_models.loader.errors import CheckpointError
from edge_models.loader.load import load_model, load_model_deferred, load_weights
from edge_models.loader.sources import TensorSource, open_checkpoint

__all__ = ["CheckpointError", "TensorSource", "load_model", "load_model_deferred", "load_weights", "open_checkpoint"]
