"""The model a bundle carries: the converted file without the signatures only our desktop runtime runs.

`convert` adds `shortlist_<K>` signatures by default on big vocabularies: decoding through an int4 copy of the LM
head is faster on the desktop, but LiteRT-LM and MediaPipe never call them, and the copy is a third of Gemma 3
270M's file. A phone should not download it.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_models.layers.shortlist import SHORTLIST_PREFIX
from edge_models.tflite.pruning import drop_signatures
from edge_models.tflite.reading import signature_names

from edge_models_bundler.validate import Report


@contextlib.contextmanager
def phone_model(tflite: Path, scratch: Path, report: Report) -> Iterator[Path]:
    """`tflite`, or a copy without its desktop-only signatures in a temporary folder under `scratch` (noted in
    `report`), for as long as the context lasts."""
    try:
        names = signature_names(tflite)
    except (struct.error, ValueError, IndexError):  # not a flatbuffer: carried as it is (validation says why)
        names = []
    desktop_only = [name for name in names if name.startswith(SHORTLIST_PREFIX)]
    if not desktop_only:
        yield tflite
        return
    with tempfile.TemporaryDirectory(prefix=".edge-models-bundle-", dir=scratch) as folder:
        pruned = Path(folder) / tflite.name
        saved = drop_signatures(tflite, pruned, desktop_only)
        report.notes.append(
            f"left out {', '.join(desktop_only)} ({saved / 1e6:,.1f} MB): our desktop runtime's two-stage LM head, "
            "which phone runtimes do not run"
        )
        yield pruned
