"""The terminal is the user's: our stages, progress bars, results. Everything else goes to a log file.

LiteRT, absl, oneDNN and XNNPACK write to file descriptor 2 from native code, and several Python libraries
(torch's logging, litert-torch's rich console, torchao, warnings) write to `sys.stdout` / `sys.stderr` at call
time. `quiet()` points descriptors 1 and 2 (and with them `sys.stdout` / `sys.stderr`, inherited by worker
processes too) at the log file, and keeps duplicates of the terminal's descriptors for this module's `out`,
`err` and `progress`, the only way our own output reaches the terminal. `-v` skips all of it.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # Windows: one log per verb, unlocked
    fcntl = None

_terminal_out: TextIO | None = None
_terminal_err: TextIO | None = None
_bar = None  # (rich Progress, task id, label) while a progress bar is on screen
_log_path: Path | None = None
# "calibrated block 3/18", "wrote 16/48 weights", "auto: sensitivity 5/36 (...)": a step of a long task.
_STEP = re.compile(r"^(?P<head>.*?)(?P<done>\d+)/(?P<total>\d+)(?P<tail>.*)$")


def stdout() -> TextIO:
    return _terminal_out or sys.stdout


def stderr() -> TextIO:
    return _terminal_err or sys.stderr


def out(text: str = "", end: str = "\n") -> None:
    """Results: generated text, tables."""
    _end_bar()
    stream = stdout()
    stream.write(text + end)
    stream.flush()


def err(text: str) -> None:
    """Stages, warnings and summaries."""
    _end_bar()
    stream = stderr()
    stream.write(text + "\n")
    stream.flush()


def stage(message: str) -> None:
    """A progress message from a long task. Steps of the form `... k/n ...` drive a progress bar on a
    terminal (each new label starts a bar); other messages are printed as lines."""
    global _bar
    step = _STEP.match(message)
    if step is None:
        err(f"[edge-models] {message}")
        return
    if not stderr().isatty():
        # A log or a pipe gets the first step, each quarter and the last, not a line per step.
        done, total = int(step["done"]), int(step["total"])
        if done in (1, total) or done * 4 // total != (done - 1) * 4 // total:
            err(f"[edge-models] {message}")
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    label = (step["head"] + step["tail"].split("(")[0]).strip(" :") or "working"
    if _bar is None or _bar[2] != label:
        _end_bar()
        bar = Progress(
            TextColumn("[edge-models] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=stderr()),
            transient=False,
        )
        bar.start()
        _bar = (bar, bar.add_task(label, total=int(step["total"])), label)
    bar, task, _ = _bar
    bar.update(task, completed=int(step["done"]), total=int(step["total"]))
    if int(step["done"]) >= int(step["total"]):
        _end_bar()


def _end_bar() -> None:
    global _bar
    if _bar is not None:
        _bar[0].stop()
        _bar = None


def relay_stages(future) -> None:
    """Until `future` (a child process's work) is done, show the stage messages the child writes: its output
    goes to our log file, so they are read back from there."""
    if _log_path is None:
        return
    with open(_log_path, encoding="utf-8", errors="replace") as log:
        log.seek(0, os.SEEK_END)
        pending = ""
        while True:
            finished = future.done()
            pending += log.read()
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.startswith("[edge-models] "):
                    stage(line[len("[edge-models] ") :])
            if finished:
                return
            time.sleep(0.2)


def log_dir() -> Path:
    base = os.environ.get("EDGE_MODELS_LOG_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-models", "logs"
    )
    return Path(base)


@contextmanager
def quiet(name: str, verbose: bool = False, until_exit: bool = False) -> Iterator[Path | None]:
    """Send native and library output to `<log dir>/<name>.log` while the block runs; yields the log's path.

    On an unexpected exception the log's last lines and its path are printed.
    With `until_exit` (a command-line process), native output stays in the log after the block, since LiteRT
    tears its accelerators down, with more log lines, only when the process exits; Python's own streams go back
    to the terminal.
    """
    global _terminal_out, _terminal_err, _log_path
    if verbose or _terminal_err is not None or not _real_descriptors():
        # Output captured by a caller (click's test runner, a notebook) is not the terminal: leave it alone.
        yield None
        return
    try:
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path, log = open_log(directory, name)
    except OSError:
        path = Path(tempfile.mkstemp(prefix=f"edge-models-{name}-", suffix=".log")[1])
        log = open(path, "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    log.write(f"edge-models {name}: {' '.join(sys.argv)}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    _terminal_out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    _terminal_err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    _log_path = path
    failure: BaseException | None = None
    try:
        yield path
    except BaseException as e:
        failure = e
        raise
    finally:
        _end_bar()
        sys.stdout.flush()
        sys.stderr.flush()
        if until_exit:
            sys.stdout, sys.stderr = _terminal_out, _terminal_err
        else:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            _terminal_out.close()
            _terminal_err.close()
            log.close()
        for fd in saved:
            os.close(fd)
        _terminal_out = _terminal_err = _log_path = None
        if failure is not None:
            _report_failure(failure, path)


def open_log(directory: Path, name: str) -> tuple[Path, TextIO]:
    """`<name>.log` in `directory`, emptied and locked for this process; while another process holds it (the same
    verb running twice at once), `<name>.2.log` and so on, so that neither writes into, nor shows stages from, the
    other's log."""
    for n in itertools.count(1):
        path = directory / (f"{name}.log" if n == 1 else f"{name}.{n}.log")
        log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - the caller closes it
        if fcntl is not None:
            try:
                fcntl.flock(log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file is closed
            except OSError:
                log.close()
                continue
        log.truncate(0)
        return path, log
    raise AssertionError("unreachable")


def _real_descriptors() -> bool:
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _report_failure(failure: BaseException, path: Path) -> None:
    import click

    # Our own errors say what is wrong in one line; the log would only bury it.
    if isinstance(failure, (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit)):
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    print("last lines of the log:\n  " + "\n  ".join(lines) + f"\n(full log: {path})", file=sys.stderr)
