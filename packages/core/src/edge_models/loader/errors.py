from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose tensors do not fit the model."""
