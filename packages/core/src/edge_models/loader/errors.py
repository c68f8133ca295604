"""What every loader (decoder, encoder, encoder-decoder) does before copying a byte: check the whole checkpoint
against the model and raise one error listing every missing, misshapen and unexpected tensor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose tensors do not fit the model."""


@dataclass(frozen=True)
class Pick:
    """Our parameter comes from `rows` of checkpoint tensor `name` (all rows when None), a tensor that then has
    `total_rows` rows (fused projections: q, k and v, or gate and up, stacked)."""

    name: str
    rows: tuple[int, int] | None = None
    total_rows: int | None = None


def check_picks(
    source,
    picks: Mapping[str, Pick],
    shapes: Mapping[str, tuple[int, ...]],
    also_used: set[str] = frozenset(),
    ignored: Callable[[str], bool] = lambda _name: False,
) -> None:
    """Raise one CheckpointError naming every tensor `picks` wants that `source` lacks or holds in another shape
    than `shapes` (our parameter's), and every tensor of `source` neither picked, in `also_used`, nor `ignored`."""
    available = set(source.names())
    problems: list[str] = []
    checked: set[str] = set()
    for param, pick in picks.items():
        if pick.name in checked:  # the parts of a fused tensor: report it once
            continue
        checked.add(pick.name)
        want = tuple(shapes[param])
        if pick.name not in available:
            problems.append(f"missing tensor {pick.name!r} (for {param}, expected shape {list(want)})")
            continue
        found = tuple(source.shape(pick.name))
        if pick.rows is not None:
            total = [pick.total_rows, *want[1:]]
            ok, want_desc = list(found) == total, f"{total} (fused projections stacked)"
        else:
            ok, want_desc = found == want, str(list(want))
        if not ok:
            problems.append(f"shape mismatch for {pick.name!r}: expected {want_desc}, found {list(found)}")
    used = {p.name for p in picks.values()} | set(also_used)
    for name in sorted(available - used):
        if not ignored(name):
            problems.append(f"unexpected tensor {name!r} with shape {list(source.shape(name))}")
    if problems:
        listing = "\n  ".join(problems)
        raise CheckpointError(
            f"{source.path}: checkpoint does not match the model ({len(problems)} problem(s)):\n  {listing}"
        )
