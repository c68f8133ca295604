"""Open a converted model in Google's Model Explorer (`pip install 'edge-models[explore]'`), with overlays.

A bundle's model section is the `.tflite` Model Explorer reads: it is mapped from the copy the runtime keeps in its
cache (`runtime.weight_cache.bundle_model_file`), or copied to a temporary file when the caches are off. The server
is Model Explorer's own local one (flask, on 127.0.0.1); its TFLite adapter shows one graph per signature.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_models.runtime.bundles import BUNDLE_SUFFIXES, read_bundle

HOST = "127.0.0.1"
SUFFIXES = (".tflite", *BUNDLE_SUFFIXES)


class ExploreError(ValueError):
    pass


@contextlib.contextmanager
def model_file(path: str | Path) -> Iterator[Path]:
    """The .tflite of `path`: itself, or a bundle's model section as a file of its own."""
    from edge_models.runtime.weight_cache import bundle_model_file

    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ExploreError(f"{path}: not a model file (expected {', '.join(SUFFIXES)})")
    if path.suffix == ".tflite":
        yield path
        return
    bundle = read_bundle(path)
    cached = bundle_model_file(path, bundle.model_span)
    if cached is not None:
        yield cached
        return
    with tempfile.TemporaryDirectory(prefix="edge-models-explore-") as tmp:
        out = Path(tmp) / (path.stem + ".tflite")
        out.write_bytes(bundle.tflite)
        yield out


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def explorer_config(tflite: Path, overlays: dict[str, str]):
    """Model Explorer's config: the model and each overlay (name -> node data JSON) applied to it."""
    try:
        import model_explorer
    except ImportError:
        raise ExploreError(
            "Model Explorer is not installed: pip install 'edge-models[explore]' (or ai-edge-model-explorer); "
            "`edge-models explore FILE --summary` needs nothing more"
        ) from None
    config = model_explorer.config().add_model_from_path(str(tflite))
    for name, data in overlays.items():
        config.add_node_data(name, data, model_name=tflite.name)
    return config


def url(config, port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}/?data={config.to_url_param_value()}"


def serve(config, port: int, open_browser: bool, host: str = HOST) -> None:
    """Run Model Explorer's server until interrupted."""
    import model_explorer

    if port_in_use(port, host):
        raise ExploreError(f"port {port} is in use: give another with --port")
    model_explorer.visualize_from_config(config, host=host, port=port, no_open_in_browser=not open_browser)
