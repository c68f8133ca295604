"""Outputs that cannot be written: one line naming the path and the cause, and nothing left behind."""

from __future__ import annotations

import errno
import os

import pytest
from click.testing import CliRunner

from edge_models import cli as cli_module
from edge_models.io.files import WriteError, write_atomically


def _filling_then(error: int, written: int = 4096):
    def write(f):
        f.write(b"x" * written)
        f.flush()
        raise OSError(error, os.strerror(error))

    return write


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_a_refused_write_names_the_path_and_cause_and_leaves_nothing(tmp_path, error, cause):
    out = tmp_path / "sub" / "model.tflite"
    with pytest.raises(WriteError) as info:
        write_atomically(out, _filling_then(error), size_hint=3_000_000)
    message = str(info.value)
    assert message.startswith(f"cannot write {out}: {cause}"), message
    if error in (errno.ENOSPC, errno.EDQUOT):
        assert "about 3.0 MB needed" in message and "free in" in message, message
    assert not list((tmp_path / "sub").iterdir())  # the temporary file is gone too


def test_without_a_size_estimate_the_bytes_written_are_named(tmp_path):
    with pytest.raises(WriteError, match=r"more than the 0\.0 MB written"):
        write_atomically(tmp_path / "m.bin", _filling_then(errno.ENOSPC, written=40_000))


def test_an_output_that_is_a_directory_is_named(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(WriteError, match="it is a directory"):
        write_atomically(tmp_path / "out", lambda f: f.write(b"x"))
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]


def test_other_errors_keep_their_type(tmp_path):
    # A bug or a failing read is not the user's disk: it keeps its traceback.
    with pytest.raises(OSError) as info:
        write_atomically(tmp_path / "m.bin", _filling_then(errno.EIO))
    assert not isinstance(info.value, WriteError) and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_convert_on_a_full_disk_says_so_in_one_line(tmp_path, monkeypatch):
    from edge_models.convert import streaming

    def full_disk(skeleton, formats, read, f, *args):
        f.write(b"\0" * 10_000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(streaming, "write_with_weights", full_disk)
    cli_module._add_builtin_groups()
    out = tmp_path / "out" / "m.tflite"
    result = CliRunner().invoke(
        cli_module.cli, ["convert", "llama", "--tiny", "--quantize", "int8", "--jobs", "1", "-o", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Error:"))
    assert f"cannot write {out}: no space left on device (about" in line and "MB needed" in line, result.output
    assert not list((tmp_path / "out").iterdir())


def test_a_verb_running_twice_at_once_gets_a_log_of_its_own(tmp_path):
    """The second process of the same verb writes `<verb>.2.log`: the first's log is neither emptied nor mixed
    with the second's lines (whose stage lines the terminal would otherwise show as its own)."""
    import subprocess
    import sys

    from edge_models.io.console import open_log

    holder = (
        "import sys, time; from pathlib import Path; from edge_models.io.console import open_log\n"
        "path, log = open_log(Path(sys.argv[1]), 'bench'); log.write('first run\\n'); print(path.name, flush=True)\n"
        "time.sleep(30)"
    )
    first = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "bench.log"
        path, log = open_log(tmp_path, "bench")
        log.write("second run\n")
        log.close()
        assert path.name == "bench.2.log"
        assert (tmp_path / "bench.log").read_text() == "first run\n"
        assert path.read_text() == "second run\n"
    finally:
        first.kill()
        first.wait()
    # Once the first has exited, its log is free again (and emptied for the next run).
    path, log = open_log(tmp_path, "bench")
    log.close()
    assert path.name == "bench.log" and path.read_text() == ""
