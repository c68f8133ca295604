"""Calibration text: the default one shipped with core, or the user's `--calibration FILE`, as token windows.

The default text was written for this project (expository prose, a story with dialogue, a chat exchange, a how-to,
an FAQ, Python and JavaScript, a table, facts with numbers, an email, French, Spanish and German, worked
arithmetic); it shares nothing with the evaluation text of the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

DEFAULT_CALIBRATION = Path(__file__).parent / "data" / "calibration.txt"
MIN_CHARS = 2_000
MIN_TOKENS = 512
WINDOW = 512  # tokens per calibration sequence, start token included
MAX_TOKENS = 4_608  # windows start below this: ten of 512 on Gemma 3 (5,120 tokens), seconds per block on 2 cores
HELD_OUT_WINDOWS = 3  # windows `auto` measures on, spread over the text and kept out of its calibration


class CalibrationError(ValueError):
    pass


def read_calibration_text(path: str | Path | None = None) -> str:
    """The text at `path` (default: the shipped one), refused with the reason if it cannot calibrate anything."""
    path = Path(path) if path is not None else DEFAULT_CALIBRATION
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise CalibrationError(f"calibration file {path} is not text (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CalibrationError(f"calibration file {path} is not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise CalibrationError(f"calibration file {path} is empty")
    if len(text.strip()) < MIN_CHARS:
        raise CalibrationError(
            f"calibration file {path} has {len(text.strip()):,} characters; at least {MIN_CHARS:,} are needed "
            "(a few pages of text like what the model will see)"
        )
    return text


def calibration_windows(
    text: str,
    encode: Callable[[str], list[int]],
    start_token: int | None,
    window: int = WINDOW,
    max_tokens: int = MAX_TOKENS,
    source: str = "calibration text",
) -> list[list[int]]:
    """Token windows of `text` (each led by `start_token` when the model has one), up to `max_tokens` in all."""
    windows = _windows(encode(text), start_token, window, source)
    step = window - (start_token is not None)
    return [w for k, w in enumerate(windows) if k * step < max_tokens]


def held_out_split(
    text: str,
    encode: Callable[[str], list[int]],
    start_token: int | None,
    window: int = WINDOW,
    max_tokens: int = MAX_TOKENS,
    count: int = HELD_OUT_WINDOWS,
    source: str = "calibration text",
) -> tuple[list[list[int]], list[list[int]]]:
    """(calibration, held out) for `auto`: `count` windows spread evenly over the whole text are held out to
    measure on (tokens the rounding was not fitted to, from every part of the text: the shipped text ends in code,
    other languages and arithmetic), and calibration takes `calibration_windows`' windows less those. A text too
    short to spare them holds out nothing."""
    windows = [w for w in _windows(encode(text), start_token, window, source) if len(w) >= window // 2]
    step = window - (start_token is not None)
    calibrating = [k for k in range(len(windows)) if k * step < max_tokens]
    if len(calibrating) <= count:
        return [windows[k] for k in calibrating], []
    held = {int((j + 0.5) * len(windows) / count) for j in range(count)}
    return [windows[k] for k in calibrating if k not in held], [windows[k] for k in sorted(held)]


def _windows(ids: list[int], start_token: int | None, window: int, source: str) -> list[list[int]]:
    if len(ids) < MIN_TOKENS:
        raise CalibrationError(f"{source} is {len(ids)} tokens long; at least {MIN_TOKENS} are needed")
    lead = [] if start_token is None else [start_token]
    step = window - len(lead)
    windows = [lead + ids[i : i + step] for i in range(0, len(ids), step)]
    return [w for w in windows if len(w) >= 32 or w is windows[0]]


def tokenized_calibration(tokenizer, start_token: str | None, text_file: str | Path | None = None) -> list[list[int]]:
    """The calibration text (`text_file`, default: the shipped one) as windows of `tokenizer`'s ids, each led by
    `start_token`'s id when the model has one."""
    text = read_calibration_text(text_file)
    start_id = tokenizer.piece_to_id(start_token) if start_token else None
    return calibration_windows(
        text, tokenizer.encode, start_id, source=str(text_file or "the shipped calibration text")
    )


def tokenized_held_out_split(
    tokenizer, start_token: str | None, text_file: str | Path | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """`held_out_split` of the calibration text in `tokenizer`'s ids."""
    start_id = tokenizer.piece_to_id(start_token) if start_token else None
    text = read_calibration_text(text_file)
    return held_out_split(text, tokenizer.encode, start_id, source=str(text_file or "the shipped calibration text"))
