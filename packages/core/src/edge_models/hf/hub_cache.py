"""Checkpoints named by Hugging Face id (`ORG/NAME[@REVISION]`), found in the local hub cache; never downloaded.

The cache is the folder `huggingface_hub` fills (`hf download`, `from_pretrained`):

    <cache>/models--ORG--NAME/
        blobs/<sha>                  file contents, shared by every revision
        refs/main                    the commit hash a branch or tag points to (refs/pr/1 too)
        snapshots/<hash>/config.json symlinks into blobs/ (copies where symlinks are unavailable)

It is read directly rather than through `huggingface_hub`: core does not depend on it, its lookups answer one file
at a time, and its cache location is fixed when it is imported. The folder is chosen as it chooses it, at call time:
HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME/huggingface/hub, then
~/.cache/huggingface/hub. Nothing here opens a network connection.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# huggingface_hub's rule for repo ids (`validate_repo_id`), with the namespace required: a bare `NAME` reads as a
# file name far more often than as one of the hub's few legacy un-namespaced models.
_PART = r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"(?P<repo>{_PART}/{_PART})(?:@(?P<revision>[\w./-]+))?")
_HEX = re.compile(r"[0-9a-f]{7,40}")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.gguf")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class HubCacheError(FileNotFoundError):
    """An id that names no complete checkpoint in the local cache (caught by the CLI as a one-line error)."""


class NotInCacheError(HubCacheError):
    """The model, or the revision asked for, was never downloaded into the cache."""


class PartialDownloadError(HubCacheError):
    """The snapshot is there but lacks config.json or weights: a download that did not finish."""


def hub_cache_dir() -> Path:
    """The cache folder `huggingface_hub` would use now, read from the environment at every call."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return _expand(os.environ[variable])
    if os.environ.get("HF_HOME"):
        return _expand(os.environ["HF_HOME"]) / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return _expand(base) / "huggingface" / "hub"


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `text` is spelled like `ORG/NAME[@REVISION]`, else None."""
    match = _HUB_ID.fullmatch(text)
    # ".." would let a revision name a file outside refs/; the hub forbids it in ids, as it does "--".
    if match is None or "--" in match["repo"] or ".." in text:
        return None
    return match["repo"], match["revision"]


def resolve_checkpoint(checkpoint: str | Path, cache: Path | None = None) -> Path:
    """The local path a checkpoint argument stands for. An existing path is returned as it is (a local folder wins
    over an id of the same spelling); `ORG/NAME[@REVISION]` becomes its snapshot folder in the cache; anything else
    comes back unchanged, for the caller's own "no such file" error."""
    path = Path(checkpoint)
    if path.exists():
        return path
    parsed = parse_hub_id(path.as_posix())
    if parsed is None:
        return path
    return snapshot_folder(*parsed, cache=cache)


def snapshot_folder(repo_id: str, revision: str | None = None, cache: Path | None = None) -> Path:
    """The complete snapshot of `repo_id` at `revision` (a branch or tag in refs/, or a commit hash or its first
    7+ characters; default `main`). Raises NotInCacheError or PartialDownloadError, each one line saying what to
    run."""
    cache = cache or hub_cache_dir()
    repo = cache / repo_folder_name(repo_id)
    fetch = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
    label = f"{repo_id}@{revision}" if revision else repo_id
    if not repo.is_dir():
        raise NotInCacheError(
            f"{label} is neither a local path nor in the Hugging Face cache ({cache}); nothing is downloaded "
            f"here: fetch it with `{fetch}` (or set HF_HUB_CACHE / HF_HOME to the cache that holds it)"
        )
    commit = _commit_of(repo, revision or "main")
    if commit is None:
        cached = ", ".join(_revision_labels(repo)) or "none"
        raise NotInCacheError(
            f"{label} is not in the Hugging Face cache ({repo}; cached revisions: {cached}); fetch it with `{fetch}`"
        )
    snapshot = repo / "snapshots" / commit
    missing = _missing_parts(snapshot)
    if missing:
        raise PartialDownloadError(
            f"{label} is only partly downloaded ({snapshot} lacks {' and '.join(missing)}); finish it with `{fetch}`"
        )
    return snapshot


def repo_folder_name(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def _commit_of(repo: Path, revision: str) -> str | None:
    """The commit hash `revision` names in this repo's cache, or None."""
    ref = repo / "refs" / revision
    if ref.is_file():
        return ref.read_text().strip()
    snapshots = repo / "snapshots"
    if (snapshots / revision).is_dir():
        return revision
    if _HEX.fullmatch(revision) and snapshots.is_dir():
        # A short hash, as `git log --oneline` and the hub's web pages show them; only when it is unambiguous.
        found = [s.name for s in snapshots.iterdir() if s.name.startswith(revision)]
        if len(found) == 1:
            return found[0]
    return None


def _refs(repo: Path) -> dict[str, str]:
    """Branch and tag names (`main`, `v1.0`, `pr/1`) -> commit hash."""
    refs = repo / "refs"
    if not refs.is_dir():
        return {}
    return {p.relative_to(refs).as_posix(): p.read_text().strip() for p in sorted(refs.rglob("*")) if p.is_file()}


def _revision_labels(repo: Path) -> list[str]:
    refs = _refs(repo)
    labels = [f"{name} -> {commit[:12]}" for name, commit in refs.items()]
    named = set(refs.values())
    snapshots = repo / "snapshots"
    if snapshots.is_dir():
        labels += [s.name[:12] for s in sorted(snapshots.iterdir()) if s.name not in named]
    return labels


def _missing_parts(snapshot: Path) -> list[str]:
    """What a usable checkpoint needs that this snapshot lacks. A file whose blob is gone (a dangling symlink)
    counts as missing; a GGUF needs no config.json (its metadata carries the configuration)."""
    if not snapshot.is_dir():
        return ["every file (the ref is written before the first file arrives)"]
    missing = []
    has_gguf = any(p.exists() for p in snapshot.glob("*.gguf"))
    if not (snapshot / "config.json").exists() and not has_gguf:
        missing.append("config.json")
    weights = [p for pattern in _WEIGHT_PATTERNS for p in snapshot.glob(pattern)]
    dangling = [p.name for p in weights if not p.exists()]
    absent_shards = _absent_shards(snapshot)
    if absent_shards:
        missing.append(f"weight shards ({', '.join(absent_shards)})")
    elif dangling:
        missing.append(f"weight files ({', '.join(dangling)})")
    elif not weights:
        missing.append("weights (*.safetensors, pytorch_model*.bin or *.gguf)")
    return missing


def _absent_shards(snapshot: Path) -> list[str]:
    """Shards a sharded checkpoint's index names that are not (or not yet) in the snapshot."""
    for name in _INDEXES:
        index = snapshot / name
        if index.exists():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError):
                return [f"{name} unreadable"]
            return [s for s in shards if not (snapshot / s).exists()]
    return []


@dataclass(frozen=True)
class CachedCheckpoint:
    """One complete snapshot in the cache, as `edge-models list --cached` shows it."""

    name: str  # what --checkpoint takes: ORG/NAME for the snapshot refs/main points to, else ORG/NAME@REVISION
    path: Path
    architectures: tuple[str, ...]
    size: int  # bytes on disk, each blob once


def cached_checkpoints(cache: Path | None = None) -> list[CachedCheckpoint]:
    """Every complete model snapshot in the cache, sorted by name. Partial downloads are left out."""
    cache = cache or hub_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for repo in sorted(cache.glob("models--*")):
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        for snapshot in sorted((repo / "snapshots").glob("*")):
            if snapshot.is_dir() and not _missing_parts(snapshot):
                found.append(_describe(repo_id, repo, snapshot))
    return sorted(found, key=lambda c: c.name)


def _describe(repo_id: str, repo: Path, snapshot: Path) -> CachedCheckpoint:
    names = [name for name, commit in _refs(repo).items() if commit == snapshot.name]
    if "main" in names:
        name = repo_id
    else:
        name = f"{repo_id}@{names[0] if names else snapshot.name[:12]}"
    return CachedCheckpoint(name, snapshot, _architectures(snapshot), _size_on_disk(snapshot))


def _architectures(snapshot: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((snapshot / "config.json").read_text()).get("architectures") or ())
    except (OSError, ValueError, AttributeError):
        return ()  # a GGUF-only snapshot, or a config.json that is not a JSON object


def _size_on_disk(snapshot: Path) -> int:
    """Bytes of the blobs the snapshot's files point to, each counted once (two names may share a blob)."""
    seen, total = set(), 0
    for path in snapshot.rglob("*"):
        try:
            stat = path.stat()  # follows the symlink to its blob
        except OSError:
            continue
        if path.is_file() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


def format_size(size: float) -> str:
    """Decimal units, as the hub's pages and `hf cache ls` show sizes."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            break
    return f"{size:.1f} {unit}"
