"""XNNPACK's packed-weight cache: one file per model, so that its weights are packed once, not once per signature
and on every load.

Without it, XNNPACK packs the weights again for each signature's subgraph (a file with 8 signatures peaked at ~8x
its size in memory) and on every load. With `Options().cpu_options.xnnpack_weight_cache_path` (a file path) every
subgraph shares one packed copy, memory-mapped from the file, and a later load maps it instead of packing.

A cache file belongs to one model file (its path, size and modification time, or a bundle's), one LiteRT build and
one CPU: all of it goes into the file's name, so a changed model, another LiteRT version or another processor never
reuses a stale cache. It is built under a temporary name and renamed into place once the model loaded, so a process
killed while building leaves no file under the real name; XNNPACK itself checks a file's header and offsets on load
and rebuilds one that does not hold together (measured: a truncated file and one of random bytes were rebuilt).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".xnnpack_cache"
MODEL_SUFFIX = ".tflite"
ENV_DIR = "EDGE_MODELS_CACHE_DIR"  # where cache files go [~/.cache/edge-models]
ENV_OFF = "EDGE_MODELS_NO_WEIGHT_CACHE"  # "1": load without the caches (`edge-models --no-weight-cache VERB`)
# Above this size a first load takes seconds to a minute (an 8B int4 file: 36 s): say what is happening.
_ANNOUNCE_BYTES = 64 << 20
_warned: set[str] = set()


def cache_root() -> Path:
    root = os.environ.get(ENV_DIR) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-models"
    return Path(root)


def cache_dir() -> Path:
    """Packed-weight caches."""
    return cache_root() / "xnnpack"


def models_dir() -> Path:
    """Bundles' models as files of their own (`bundle_model_file`)."""
    return cache_root() / "models"


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "") not in ("1", "true", "yes")


def file_identity(path: str | Path) -> str:
    """What makes a model file the same file: where it is, its size and when it last changed."""
    path = Path(path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def bytes_identity(data: bytes) -> str:
    """A model held in memory (its bundle unknown): its content."""
    return "bytes|" + hashlib.blake2b(data, digest_size=16).hexdigest()


@functools.cache
def _platform_identity() -> str:
    """The LiteRT build and the processor: packed layouts depend on both."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        litert = version("ai-edge-litert")
    except PackageNotFoundError:
        litert = "unknown"
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                cpu += "|" + line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                break
    return f"{litert}|{cpu}"


def cache_file(identity: str, flags: int) -> Path:
    """`<model file name>-<where it lives>-<everything else>.xnnpack_cache`: the middle part lets a new version of a
    model file replace the old cache of that file."""
    return _named(cache_dir(), identity, f"{flags}|{_platform_identity()}", SUFFIX)


def _named(folder: Path, identity: str, extra: str, suffix: str) -> Path:
    where = identity.split("|", 1)[0]
    name = "model" if where == "bytes" else Path(where).name
    key = hashlib.blake2b(f"{identity}|{extra}".encode(), digest_size=8).hexdigest()
    place = hashlib.blake2b(where.encode(), digest_size=4).hexdigest()
    return folder / f"{name[:48]}-{place}-{key}{suffix}"


def bundle_model_file(bundle: str | Path, span: tuple[int, int]) -> Path | None:
    """The model section of a bundle (`span`: offset, length) as a .tflite of its own in the cache, copied once, so
    that the runtime maps it as it maps any .tflite: `CompiledModel.from_buffer` takes only `bytes`, and reading a
    bundle's model into memory cost its size in RSS and ~0.3 s per 300 MB on every load. None: the caches are off
    or cannot be written (the caller reads the bytes)."""
    from edge_models.io.files import WriteError, write_atomically

    if not enabled():
        return None
    final = _named(models_dir(), file_identity(bundle), f"{span}", MODEL_SUFFIX)
    if final.is_file() and final.stat().st_size == span[1]:
        return final
    if span[1] >= _ANNOUNCE_BYTES:
        _stage(
            f"copying the model out of {Path(bundle).name} ({span[1] / 1e6:,.0f} MB) once, to map it: {final.parent}"
        )

    def copy(out) -> None:
        with open(bundle, "rb") as source:
            source.seek(span[0])
            left = span[1]
            while left:
                chunk = source.read(min(left, 64 << 20))
                if not chunk:
                    raise OSError(f"{bundle} ends inside its model section")
                out.write(chunk)
                left -= len(chunk)

    try:
        write_atomically(final, copy)
    except (OSError, WriteError) as e:
        _say_once(f"bundle model read into memory: cannot write {final.parent} ({e})")
        return None
    _drop_older_versions(final, MODEL_SUFFIX)
    return final


@dataclass
class CacheUse:
    path: Path | None  # what to give XNNPACK; None: no cache (off, or the folder cannot be written)
    final: Path | None = None  # where a newly built cache goes once the model loaded
    built: bool = False  # True: this load builds the cache (cold)


@contextlib.contextmanager
def weight_cache(identity: str, flags: int) -> Iterator[CacheUse]:
    """The cache file for one load: the existing one (warm), or a temporary one renamed into place when the block
    ends without an error (cold). A folder that cannot be written runs without the cache, said once."""
    if not enabled():
        yield CacheUse(None)
        return
    final = cache_file(identity, flags)
    if final.is_file() and final.stat().st_size > 0:
        yield CacheUse(final, final)
        return
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        building = final.with_name(f".{final.name}.{os.getpid()}.partial")
        building.touch()
    except OSError as e:
        _say_once(f"no packed-weight cache: cannot write {final.parent} ({e.strerror}); loading packs weights")
        yield CacheUse(None)
        return
    size = _identity_size(identity)
    if size >= _ANNOUNCE_BYTES:
        _stage(
            f"packing the weights of {_shown_name(identity)} ({size / 1e6:,.0f} MB) for this CPU, once: the cache "
            f"goes to {final.parent}"
        )
    try:
        yield CacheUse(building, final, built=True)
        # Two processes building at once each rename a complete file of their own: either one is right.
        os.replace(building, final)
        _drop_older_versions(final, SUFFIX)
    finally:
        building.unlink(missing_ok=True)


def _drop_older_versions(current: Path, suffix: str) -> None:
    """Caches of earlier versions of the same model file (same name and place, another key) are dead weight."""
    stem, place = current.name.rsplit("-", 2)[:2]
    for other in current.parent.glob(f"{stem}-{place}-*{suffix}"):
        if other != current:
            other.unlink(missing_ok=True)


def _shown_name(identity: str) -> str:
    """The model's file name as the user knows it (a bundle's, for the model copied out of it)."""
    path = Path(identity.split("|", 1)[0])
    return path.name.rsplit("-", 2)[0] if path.parent == models_dir() else path.name


def _identity_size(identity: str) -> int:
    """The model file's size from a `file_identity` (0 for bytes)."""
    parts = identity.split("|")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def _stage(message: str) -> None:
    from edge_models.io import console

    console.stage(message)


def _say_once(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    from edge_models.io import console

    console.err(message)


def _cache_folders() -> list[tuple[Path, str]]:
    return [(cache_dir(), SUFFIX), (models_dir(), MODEL_SUFFIX)]


def cached_files() -> list[tuple[Path, int]]:
    """(path, size in bytes) of every cache file (packed weights, bundles' models), largest first."""
    files = [
        (p, p.stat().st_size)
        for folder, suffix in _cache_folders()
        if folder.is_dir()
        for p in folder.glob(f"*{suffix}")
        if p.is_file()
    ]
    return sorted(files, key=lambda item: -item[1])


def clear() -> tuple[int, int]:
    """Remove every cache file (and leftovers of interrupted builds): (files removed, bytes freed)."""
    removed = freed = 0
    for folder, suffix in _cache_folders():
        if not folder.is_dir():
            continue
        for p in [*folder.glob(f"*{suffix}"), *folder.glob(f".*{suffix}.*.partial")]:
            with contextlib.suppress(OSError):
                size = p.stat().st_size
                p.unlink()
                removed, freed = removed + 1, freed + size
    return removed, freed
