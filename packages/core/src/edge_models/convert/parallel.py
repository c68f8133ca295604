"""Export a skeleton's signatures in several processes at once and merge the flatbuffers.

Exporting is single-threaded Python (`torch.export`, decompositions, MLIR lowering), one signature after another:
on small models it is nearly all of a conversion. Each signature's graph is independent of the others, so worker
processes export disjoint groups of signatures and the results are merged into one model (`tflite.merging`). The
skeleton holds no large weights (they are signature inputs), so the model is cheap to send to a worker; each worker
costs a Python + torch + litert-torch process (~1 GiB) and a few seconds to start.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from edge_models.convert.export import ExportSettings
from edge_models.layers import Decoder
from edge_models.runtime.memory import peak_rss_bytes
from edge_models.tflite.merging import merge_models

# export(model, settings, shapes, only=None): the skeleton of `only`'s signatures (`streaming.export_signatures`); a
# module-level function, so that it travels to the workers by name.
Export = Callable[..., bytes]


def export_in_parallel(
    model: Decoder, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], workers: int, export: Export
) -> tuple[bytes, int]:
    """The skeleton `export` makes, its signatures shared round-robin between `workers` processes (this one included),
    and the largest worker's own peak resident memory (0 when exported here alone). `model`'s large parameters must
    already be detached."""
    import multiprocessing

    try:
        blob = pickle.dumps(model)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        # A plugin's module holding a lambda or a closure cannot travel; export here, one signature at a time.
        warnings.warn(f"exporting in one process: the model cannot be sent to another ({e})", stacklevel=2)
        return export(model, settings, shapes), 0
    names = settings.signature_names()
    groups = [names[k::workers] for k in range(min(workers, len(names)))]
    # spawn: a forked child would inherit torch's thread pools and locks mid-use.
    with ProcessPoolExecutor(len(groups) - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(_export_group, export, blob, settings, shapes, group) for group in groups[1:]]
        parts = [export(model, settings, shapes, groups[0])]
        results = [job.result() for job in pending]
    worker_peak = max((peak for _, peak in results), default=0)
    return merge_models(parts + [part for part, _ in results]), worker_peak


def _export_group(
    export: Export, blob: bytes, settings: ExportSettings, shapes: dict[str, tuple[int, ...]], names: list[str]
) -> tuple[bytes, int]:
    return export(pickle.loads(blob), settings, shapes, names), peak_rss_bytes()
