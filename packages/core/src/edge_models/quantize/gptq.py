"""Choosing the integers and scales of one weight matrix: the grid, a clipping search, and GPTQ's
error-compensating rounding.

Both fill the storage formats the writer already knows (int8 with one scale per row, int4 with one float16 scale
per block of inputs), so every runtime runs the result unchanged; only which integers and scales go in differs.

GPTQ (Frantar et al., 2022) rounds one input column at a time and spreads each column's rounding error over the
columns not yet rounded, weighted by the inverse of the layer's input Hessian H = XᵀX (X: calibration activations
reaching the layer), so the layer's *output* on real inputs moves as little as possible. The scales are fixed
before the rounding starts ("static groups"), which lets the columns be visited in order of decreasing H diagonal
(the most used inputs first, while there is the most freedom left to absorb their error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Grid:
    """Symmetric integer grid: `bits`, and `block` inputs per scale (None: one scale per output row)."""

    bits: int
    block: int | None = None

    @property
    def qmin(self) -> int:
        # int8 uses the narrow range [-127, 127] as the runtimes' per-channel kernels expect; int4 keeps -8.
        return -127 if self.bits == 8 else -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def group(self, cols: int) -> int:
        return cols if self.block is None else self.block


# Fractions of the absolute maximum tried as the clipping bound. Past 1.0 the largest negative value lands on
# int4's extra level (-8) and the positive side clips slightly: sometimes the best trade on small blocks.
_CLIP_FRACTIONS = tuple(0.60 + 0.05 * k for k in range(12))  # 0.60 .. 1.15
# int8 rows lose little to their maximum: a short search near 1 finds what there is, in a fifth of the time.
_CLIP_FRACTIONS_INT8 = (0.85, 0.9, 0.94, 0.97, 1.0)


def round_scales(scales: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Scales as they will be stored: float16 for int4 blocks, float32 for int8 rows."""
    return scales.half().float() if grid.block is not None else scales


def search_scales(
    weight: torch.Tensor, grid: Grid, importance: torch.Tensor | None = None, rows_per_pass: int = 8192
) -> torch.Tensor:
    """Per-(row, group) scales [rows, cols // group] minimizing the importance-weighted squared rounding error.

    `importance` [cols] weighs each input (the calibration activations' mean square: an input that is always near
    zero may be rounded coarsely). Without it every input counts the same."""
    rows, cols = weight.shape
    g = grid.group(cols)
    if cols % g:
        raise ValueError(f"{cols} inputs do not split into blocks of {g}")
    imp = torch.ones(cols) if importance is None else importance.float().clamp_min(0)
    imp = imp.view(1, cols // g, g)
    out = torch.empty(rows, cols // g)
    for r0 in range(0, rows, rows_per_pass):
        blocks = weight[r0 : r0 + rows_per_pass].float().view(-1, cols // g, g)
        bound = blocks.abs().amax(dim=2)
        best_err = torch.full_like(bound, float("inf"))
        best = torch.zeros_like(bound)
        for fraction in _CLIP_FRACTIONS_INT8 if grid.bits == 8 else _CLIP_FRACTIONS:
            scale = round_scales(bound * fraction / grid.qmax, grid)
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.clamp(torch.round(blocks / safe[..., None]), grid.qmin, grid.qmax)
            err = ((blocks - q * scale[..., None]).square() * imp).sum(dim=2)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, scale, best)
        out[r0 : r0 + rows_per_pass] = best
    return out


def quantize_rtn(weight: torch.Tensor, scales: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Round to nearest on the given scales: int8 tensor [rows, cols]."""
    rows, cols = weight.shape
    full = _per_column(scales, cols, grid)
    safe = torch.where(full > 0, full, torch.ones_like(full))
    return torch.clamp(torch.round(weight.float() / safe), grid.qmin, grid.qmax).to(torch.int8)


def dequantize(q: torch.Tensor, scales: torch.Tensor, grid: Grid) -> torch.Tensor:
    return q.float() * _per_column(scales, q.shape[1], grid)


def _per_column(scales: torch.Tensor, cols: int, grid: Grid) -> torch.Tensor:
    return scales.repeat_interleave(grid.group(cols), dim=1)


def gptq(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    grid: Grid,
    *,
    damping: float = 0.01,
    block_columns: int = 128,
    rows_per_pass: int = 16384,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ-round `weight` [rows, cols] given the input Hessian [cols, cols]: (int8 values, scales).

    `damping` adds that fraction of the mean diagonal to H, which keeps the inverse stable when some inputs are
    (nearly) collinear or never active. Rows are independent (the error of a rounding moves along its own row
    only), so they are done `rows_per_pass` at a time: the working copies of a 262,144-row LM head took ~6 GB at
    once, now a sixteenth of that, with identical results."""
    if weight.shape[0] > rows_per_pass:
        parts = [
            gptq(weight[r : r + rows_per_pass], hessian, grid, damping=damping, block_columns=block_columns)
            for r in range(0, weight.shape[0], rows_per_pass)
        ]
        return torch.cat([q for q, _ in parts]), torch.cat([s for _, s in parts])
    w = weight.detach().float().clone()
    rows, cols = w.shape
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0

    scales = search_scales(w, grid, torch.diag(h))
    col_scale = _per_column(scales, cols, grid)

    order = torch.argsort(torch.diag(h), descending=True)
    w, h, col_scale = w[:, order], h[order][:, order], col_scale[:, order]
    h += damping * torch.mean(torch.diag(h)) * torch.eye(cols)
    h_inv = _upper_cholesky_of_inverse(h)

    safe_scale = torch.where(col_scale > 0, col_scale, torch.ones_like(col_scale))
    q = _gptq_columns(w, h_inv, col_scale, safe_scale, grid, block_columns)

    inverse = torch.argsort(order)
    return q[:, inverse].contiguous(), scales


def _gptq_columns(w, h_inv, col_scale, safe_scale, grid: Grid, block_columns: int) -> torch.Tensor:
    """GPTQ's column loop over the (permuted) weight, `block_columns` at a time.

    Works on the transpose, so that each column is one contiguous vector and each error update is a BLAS rank-1
    (`addr_`) or matrix (`addmm_`) update in place: on a 262,144-row LM head the row-major loop spent most of its
    time gathering strided columns and allocating temporaries."""
    wt = w.T.contiguous()
    scale_t, safe_t = col_scale.T.contiguous(), safe_scale.T.contiguous()
    cols, rows = wt.shape
    qt = torch.empty(cols, rows, dtype=torch.int8)
    for c0 in range(0, cols, block_columns):
        c1 = min(c0 + block_columns, cols)
        block = wt[c0:c1]
        errors = torch.empty(c1 - c0, rows)
        h_blk = h_inv[c0:c1, c0:c1]
        for i in range(c1 - c0):
            qi = torch.clamp(torch.round(block[i] / safe_t[c0 + i]), grid.qmin, grid.qmax)
            qt[c0 + i] = qi.to(torch.int8)
            errors[i] = (block[i] - qi * scale_t[c0 + i]) / h_blk[i, i]
            if i + 1 < c1 - c0:
                block[i + 1 :].addr_(h_blk[i, i + 1 :], errors[i], alpha=-1.0)
        if c1 < cols:
            wt[c1:].addmm_(h_inv[c0:c1, c1:].T, errors, alpha=-1.0)
    return qt.T.contiguous()


def _upper_cholesky_of_inverse(h: torch.Tensor) -> torch.Tensor:
    """U with UᵀU = H⁻¹; dampens harder until H is numerically positive definite."""
    extra = 0.0
    mean_diag = torch.mean(torch.diag(h))
    for _ in range(6):
        try:
            lower = torch.linalg.cholesky(h + extra * mean_diag * torch.eye(h.shape[0]))
            return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
        except torch.linalg.LinAlgError:
            extra = 0.01 if extra == 0 else extra * 10
    raise ValueError("the calibration Hessian is not positive definite even after damping; use more calibration text")
