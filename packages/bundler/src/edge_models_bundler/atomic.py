"""Bundles are written like every other output: to a temporary file, then renamed into place."""

from edge_models.fileio import write_atomically

__all__ = ["write_atomically"]
