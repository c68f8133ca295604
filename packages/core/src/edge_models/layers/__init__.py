"""PyTorch building blocks; every model family is assembled from these."""

from edge_models.layers.decoder import Decoder, DecoderBlock
from edge_models.layers.kv_cache import KVCache, dynamic_update_slice, empty_cache

__all__ = ["Decoder", "DecoderBlock", "KVCache", "dynamic_update_slice", "empty_cache"]
