"""LFM2's gated short convolution, a sequence mixer whose decode-time state is its last few inputs.

The state is a tensor [1, kernel_size - 1, hidden] carried in the cache dict beside the KV caches (time-major, so
one call's inputs append to it along axis 1). A prefill signature is padded past the prompt, so the state it
leaves must be the inputs before the last *real* token, not before the padding: the real length is read from
`input_pos` (padding positions are 0, as LiteRT-LM and our runtime write them).
"""

from __future__ import annotations

import torch
from torch import nn

from edge_models.config import ShortConvConfig


def real_length(input_pos: torch.Tensor) -> torch.Tensor:
    """How many of a call's tokens are real: the first always is, the rest while their position goes past the
    first's (padding carries position 0, which never does). Shape [1], int32."""
    if input_pos.shape[0] == 1:
        return torch.ones(1, dtype=torch.int32)
    later = (input_pos[1:] > input_pos[:1]).to(torch.int32)
    return (1 + later.sum()).reshape(1)


def states_per_position(window: torch.Tensor, keep: int, length: int) -> torch.Tensor:
    """The buffer after each of a call's `length` tokens: rows j + 1 .. j + keep of `window` [1, keep + T, D] for
    token j, stacked as [T, keep, D] (slices, no arithmetic: each is bit-equal to the buffer a call ending at token
    j leaves)."""
    return torch.cat([window[:, j + 1 : j + 1 + keep] for j in range(length)], dim=0)


def last_real(window: torch.Tensor, input_pos: torch.Tensor, keep: int) -> torch.Tensor:
    """The `keep` rows of `window` [1, keep + T, D] that end at the call's last real token (a gather)."""
    if input_pos.shape[0] == 1:
        return window[:, 1:]
    index = real_length(input_pos) + torch.arange(keep, dtype=torch.int32)
    return window.index_select(1, index)


class DepthwiseKernel(nn.Module):
    """The convolution's weights as checkpoints store them (`weight` [D, 1, L], optional `bias` [D])."""

    def __init__(self, channels: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, window: torch.Tensor, length: int) -> torch.Tensor:
        """Causal depthwise convolution: output t reads window rows t .. t + L - 1 ([1, L - 1 + T, D] -> [1, T, D]).

        Written as L shifted multiply-adds rather than a conv op: it converts to elementwise built-ins, which run
        the same for one token or many."""
        w = self.weight[:, 0, :]  # [D, L]
        out = window[:, :length] * w[:, 0]
        for j in range(1, w.shape[1]):
            out = out + window[:, j : j + length] * w[:, j]
        return out if self.bias is None else out + self.bias


class ShortConv(nn.Module):
    """forward(x [1, T, D], input_pos [T], state [1, L - 1, D]) -> (y [1, T, D], (new state,)); with
    `per_position`, also (the state after each token [T, L - 1, D],) for undoing a verify call's rejected drafts."""

    def __init__(self, hidden_size: int, cfg: ShortConvConfig) -> None:
        super().__init__()
        self.keep = cfg.kernel_size - 1
        self.hidden_size = hidden_size
        self.in_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=cfg.bias)
        self.conv = DepthwiseKernel(hidden_size, cfg.kernel_size, cfg.bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=cfg.bias)

    def forward(
        self, x: torch.Tensor, input_pos: torch.Tensor, state: torch.Tensor, per_position: bool = False
    ) -> tuple:
        b, c, h = self.in_proj(x).chunk(3, dim=-1)
        window = torch.cat([state.to(x.dtype), b * h], dim=1)
        y = c * self.conv(window, x.shape[1])
        # The projection is traced before the state (the order in which earlier files were written).
        out = self.out_proj(y)
        new_state = (last_real(window, input_pos, self.keep).to(state.dtype),)
        if not per_position:
            return out, new_state
        return out, new_state, (states_per_position(window, self.keep, x.shape[1]).to(state.dtype),)

    def empty_state(self) -> tuple[torch.Tensor]:
        """The state before the first token; float32 whatever the activations are."""
        return (torch.zeros(1, self.keep, self.hidden_size, dtype=torch.float32),)
