"""Checkpoints named by Hugging Face id, found in a fake hub cache laid out as `huggingface_hub` lays it out
(`blobs/`, `snapshots/HASH/` of symlinks, `refs/main`), with every network connection made to fail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from edge_models.hf.hub_cache import (
    NotInCacheError,
    PartialDownloadError,
    format_size,
    hub_cache_dir,
    parse_hub_id,
    resolve_checkpoint,
)
from edge_models.plugins import registry
from edge_models.testing import tiny_checkpoint

MAIN = "a1" * 20
V2 = "b2" * 20
REPO = "acme/tiny-llama"


def _refuse(*args, **kwargs):
    raise AssertionError("a network connection was attempted")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """The hub's offline mode, and a socket layer that fails any connection: proof that nothing tries."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(registry().get("llama"), tmp_path_factory.mktemp("tiny") / "llama")


def add_snapshot(cache: Path, repo_id: str, source: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """`source`'s files as `hf download` leaves them: contents in blobs/, named by hash; the snapshot folder
    holding relative symlinks to them; each ref a file holding the commit hash."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def test_an_id_is_the_snapshot_refs_main_points_to(offline, tiny):
    main = add_snapshot(offline, REPO, tiny, MAIN)
    add_snapshot(offline, REPO, tiny, V2, refs=("v2",))
    assert resolve_checkpoint(REPO) == main
    assert (main / "config.json").is_symlink() and (main / "config.json").resolve().parent.name == "blobs"


def test_revisions_by_branch_tag_hash_and_short_hash(offline, tiny):
    main = add_snapshot(offline, REPO, tiny, MAIN)
    v2 = add_snapshot(offline, REPO, tiny, V2, refs=("v2", "pr/1"))
    assert resolve_checkpoint(f"{REPO}@v2") == v2
    assert resolve_checkpoint(f"{REPO}@pr/1") == v2
    assert resolve_checkpoint(f"{REPO}@{MAIN}") == main
    assert resolve_checkpoint(f"{REPO}@{V2[:7]}") == v2
    with pytest.raises(NotInCacheError) as e:
        resolve_checkpoint(f"{REPO}@v3")
    message = str(e.value)
    assert f"{REPO}@v3 is not in the Hugging Face cache" in message
    assert f"`hf download {REPO} --revision v3`" in message
    assert "main -> a1a1a1a1a1a1" in message and "v2 -> b2b2b2b2b2b2" in message


def test_the_python_api_takes_an_id(offline, tiny):
    from edge_models.kinds.decoder import load_for_spec, resolve_spec
    from edge_models.loader import open_checkpoint

    add_snapshot(offline, REPO, tiny, MAIN)
    spec = resolve_spec("auto", REPO)
    assert spec.name == "llama"
    assert "model.embed_tokens.weight" in open_checkpoint(REPO).names()
    model = load_for_spec(spec, REPO)
    assert model.config.num_layers == spec.config_from_hf(json.loads((tiny / "config.json").read_text())).num_layers


def test_a_local_path_wins_over_an_id_of_the_same_spelling(offline, tiny, tmp_path, monkeypatch):
    add_snapshot(offline, REPO, tiny, MAIN)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny, tmp_path / REPO)
    assert resolve_checkpoint(REPO) == Path(REPO)


def test_a_model_not_in_the_cache_says_where_it_looked_and_what_to_run(offline):
    with pytest.raises(NotInCacheError) as e:
        resolve_checkpoint("acme/absent")
    message = str(e.value)
    assert "neither a local path nor in the Hugging Face cache" in message
    assert str(offline) in message
    assert "`hf download acme/absent`" in message
    assert "\n" not in message


def _without(name: str):
    def damage(snapshot: Path) -> None:
        (snapshot / name).unlink()

    return damage


def _blob_gone(snapshot: Path) -> None:
    (snapshot / "model.safetensors").resolve().unlink()  # a dangling symlink: the blob never arrived


def _sharded_with_a_shard_missing(snapshot: Path) -> None:
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    index = {"metadata": {}, "weight_map": shards}
    (snapshot / "model.safetensors").rename(snapshot / "model-00001-of-00002.safetensors")
    (snapshot / "model.safetensors.index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    "damage, lacks",
    [
        (_without("model.safetensors"), "weights (*.safetensors"),
        (_without("config.json"), "config.json"),
        (_blob_gone, "weight files (model.safetensors)"),
        (_sharded_with_a_shard_missing, "weight shards (model-00002-of-00002.safetensors)"),
    ],
    ids=["no-weights", "no-config", "blob-missing", "shard-missing"],
)
def test_a_partial_download_is_named_as_such(offline, tiny, damage, lacks):
    damage(add_snapshot(offline, REPO, tiny, MAIN))
    with pytest.raises(PartialDownloadError) as e:
        resolve_checkpoint(REPO)
    assert "is only partly downloaded" in str(e.value) and lacks in str(e.value)
    assert f"`hf download {REPO}`" in str(e.value)


def test_a_ref_whose_snapshot_never_arrived_is_a_partial_download(offline, tiny):
    add_snapshot(offline, REPO, tiny, V2, refs=("v2",))
    (offline / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text(MAIN)
    with pytest.raises(PartialDownloadError, match="lacks every file"):
        resolve_checkpoint(REPO)


def test_the_cache_folder_is_chosen_as_huggingface_hub_chooses_it(monkeypatch, tmp_path):
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert hub_cache_dir() == tmp_path / "hf-home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert hub_cache_dir() == tmp_path / "hub-cache"


def test_what_reads_as_an_id():
    assert parse_hub_id("google/gemma-3-270m-it") == ("google/gemma-3-270m-it", None)
    assert parse_hub_id("Qwen/Qwen2.5-0.5B@v1.0") == ("Qwen/Qwen2.5-0.5B", "v1.0")
    for text in ("./my-finetune", "my-finetune", "/abs/model", "a/b/c", "a--b/c", "org/name@../../x", "org/.name"):
        assert parse_hub_id(text) is None, text
    # Not an id and not a path: handed back for the caller's own "no such file" error.
    assert resolve_checkpoint("./missing-dir") == Path("missing-dir")


def test_verify_takes_an_id_and_a_missing_one_is_one_line(offline, tiny, run):
    add_snapshot(offline, REPO, tiny, MAIN)
    result = run("verify", "auto", "--checkpoint", REPO, "--tokens", "4")
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    result = run("verify", "auto", "--checkpoint", "acme/absent")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "`hf download acme/absent`" in result.output


def test_list_cached_shows_what_a_plugin_accepts_with_sizes(offline, tiny, tmp_path, run):
    add_snapshot(offline, REPO, tiny, MAIN)
    add_snapshot(offline, REPO, tiny, V2, refs=("v2",))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"architectures": ["NoSuchModelForCausalLM"]}))
    (unknown / "model.safetensors").write_bytes(b"not read")
    add_snapshot(offline, "acme/unknown", unknown, MAIN)
    _without("model.safetensors")(add_snapshot(offline, "acme/partial", tiny, MAIN))

    out = run("list", "--cached").output
    size = format_size(sum(f.stat().st_size for f in tiny.iterdir()))
    lines = out.splitlines()
    assert lines[0].split() == ["checkpoint", "architecture", "model", "size"]
    assert lines[1].split() == [REPO, "LlamaForCausalLM", "llama", *size.split()]
    assert lines[2].split() == [f"{REPO}@v2", "LlamaForCausalLM", "llama", *size.split()]
    assert "acme/partial" not in out and "acme/unknown" not in out
    assert "1 other cached model(s)" in out
    assert run("list", "--cached", "--names").output.split() == [REPO, f"{REPO}@v2"]
