"""Qwen3.5's gated delta-net: linear attention whose decode-time state is a convolution buffer and a recurrent matrix.

Per value head h the state S_h [key_head_dim, value_head_dim] is updated token by token with the delta rule:
S ← exp(g)·S; S ← S + k ⊗ β(v − kᵀS); out = qᵀS, where g = −exp(A_log)·softplus(a + dt_bias) < 0 decays the state and
β = σ(b) sets how strongly the token is written. q and k come out of a causal depthwise convolution (+ SiLU) over the
projected q, k and v, and are L2-normalised; the output is RMS-normalised per head and gated by silu(z).

The recurrent state is float32 whatever the recipe does to activations, and stays unquantized (it is an input, not
a weight). Prefill runs the recurrence either unrolled over the call's tokens (elementwise ops and small batched
matmuls per token) or chunked (`GatedDeltaNetConfig.prefill`): a chunk's tokens in matrix form, see `chunk_forward`.
Both are built-in ops only. Padding tokens (position 0 after the first) are written with β = 0 and g = 0, which
leaves the state exactly as the last real token left it, in either form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edge_models.config import GatedDeltaNetConfig
from edge_models.layers.short_conv import DepthwiseKernel, last_real, real_length, states_per_position


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum x² + eps) over the last axis, as the reference kernels compute it."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def _triangle(size: int, diagonal: bool) -> torch.Tensor:
    """Ones on and below (or strictly below) the diagonal, [size, size] float32, as a constant of the graph (built
    from Python numbers: torch.tril / torch.eye would lower to an iota op the TFLite runtime lacks)."""
    last = 0 if diagonal else -1
    return torch.tensor([[1.0 if j - i <= last else 0.0 for j in range(size)] for i in range(size)])


def _inverse_unit_lower(lower: torch.Tensor) -> torch.Tensor:
    """(I + L)⁻¹ for strictly lower-triangular L [..., C, C]: L is nilpotent (Lᶜ = 0), so the inverse is the finite
    series Σₙ (−L)ⁿ, computed as the product (I − L)(I + L²)(I + L⁴)... in ⌈log₂ C⌉ matmuls rather than C steps of
    forward substitution (a handful of ops per layer in the converted graph)."""
    size = lower.shape[-1]
    eye = _triangle(size, True) - _triangle(size, False)
    power, inverse = -lower, eye - lower
    for _ in range(max(0, math.ceil(math.log2(size)) - 1)):
        power = torch.matmul(power, power)
        inverse = torch.matmul(inverse, eye + power)
    return inverse


def chunk_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, g: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The delta rule over one chunk of C tokens in matrix form, per value head: q, k [H, C, dk], v [H, C, dv], beta
    and g [H, C], state [H, dk, dv] -> (outputs [H, C, dv], state after the chunk).

    With Gₜ the cumulative log-decay in the chunk and uₜ = βₜ(vₜ − e^{gₜ} Sₜ₋₁ᵀkₜ) what token t writes, the state is
    Sₜ = e^{Gₜ} S₀ + Σ_{j≤t} e^{Gₜ−Gⱼ} kⱼuⱼᵀ, so the u's solve a unit lower-triangular system
    (I + L) U = βV − diag(βe^{G}) K S₀ with L[t, j] = βₜ e^{Gₜ−Gⱼ} kₜᵀkⱼ (j < t); then
    O = diag(e^{G}) Q S₀ + (QKᵀ ∘ D) U with D[t, j] = e^{Gₜ−Gⱼ} (j ≤ t), and the state after the chunk follows."""
    size = q.shape[1]
    lower_incl = _triangle(size, True)
    # Cumulative sums as a matmul with a triangle of ones (one built-in op).
    cum = torch.matmul(g, lower_incl.transpose(0, 1))  # [H, C]
    # exp of (Gₜ − Gⱼ) ≤ 0 on and below the diagonal; above it the difference is ≥ 0 and could overflow, so it is
    # clamped to 0 before exp and then masked out.
    decay = torch.exp(torch.clamp(cum[:, :, None] - cum[:, None, :], max=0.0)) * lower_incl
    strictly = _triangle(size, False)
    lower = beta[:, :, None] * torch.matmul(k, k.transpose(-1, -2)) * decay * strictly
    solve = _inverse_unit_lower(lower)
    grown = torch.exp(cum)  # e^{Gₜ}
    written = torch.matmul(solve, beta[:, :, None] * v) - torch.matmul(
        torch.matmul(solve, (beta * grown)[:, :, None] * k), state
    )  # U [H, C, dv]
    within = torch.matmul(q, k.transpose(-1, -2)) * decay
    out = grown[:, :, None] * torch.matmul(q, state) + torch.matmul(within, written)
    last = cum[:, -1:]  # [H, 1]
    to_end = torch.exp(last - cum)[:, :, None] * k  # e^{G_C − Gⱼ} kⱼ
    state = torch.exp(last)[:, :, None] * state + torch.matmul(to_end.transpose(-1, -2), written)
    return out, state


class GatedRMSNorm(nn.Module):
    """RMSNorm over each head's output (a plain `weight`, not 1 + w), times silu(gate)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * xf.to(x.dtype) * F.silu(gate.float())).to(x.dtype)


class GatedDeltaNet(nn.Module):
    """forward(x [1, T, D], input_pos [T], conv_state [1, K - 1, C], recurrent [1, Hv, dk, dv])
    -> (y [1, T, D], (new conv_state, new recurrent)); with `per_position`, also both states after each token
    ([T, K - 1, C], [T, Hv, dk, dv]), for undoing a verify call's rejected drafts."""

    def __init__(self, hidden_size: int, cfg: GatedDeltaNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        key, value = cfg.num_key_heads * cfg.key_head_dim, cfg.num_value_heads * cfg.value_head_dim
        self.split = (key, key, value)
        self.keep = cfg.conv_kernel_size - 1
        self.in_proj_qkv = nn.Linear(hidden_size, cfg.conv_channels, bias=False)
        self.in_proj_z = nn.Linear(hidden_size, value, bias=False)
        self.in_proj_b = nn.Linear(hidden_size, cfg.num_value_heads, bias=False)
        self.in_proj_a = nn.Linear(hidden_size, cfg.num_value_heads, bias=False)
        self.conv1d = DepthwiseKernel(cfg.conv_channels, cfg.conv_kernel_size, bias=False)
        self.dt_bias = nn.Parameter(torch.ones(cfg.num_value_heads))
        self.A_log = nn.Parameter(torch.zeros(cfg.num_value_heads))
        self.norm = GatedRMSNorm(cfg.value_head_dim, cfg.norm_eps)
        self.out_proj = nn.Linear(value, hidden_size, bias=False)

    def empty_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(convolution buffer, recurrent state) before the first token, both float32."""
        c = self.cfg
        return (
            torch.zeros(1, self.keep, c.conv_channels, dtype=torch.float32),
            torch.zeros(1, c.num_value_heads, c.key_head_dim, c.value_head_dim, dtype=torch.float32),
        )

    def forward(
        self,
        x: torch.Tensor,
        input_pos: torch.Tensor,
        conv_state: torch.Tensor,
        recurrent: torch.Tensor,
        per_position: bool = False,
    ) -> tuple:
        c = self.cfg
        t = x.shape[1]
        window = torch.cat([conv_state.to(x.dtype), self.in_proj_qkv(x)], dim=1)
        mixed = F.silu(self.conv1d(window, t))
        q, k, v = torch.split(mixed, self.split, dim=-1)
        q = q.reshape(t, c.num_key_heads, c.key_head_dim).float()
        k = k.reshape(t, c.num_key_heads, c.key_head_dim).float()
        v = v.reshape(t, c.num_value_heads, c.value_head_dim).float()
        group = c.num_value_heads // c.num_key_heads
        if group > 1:
            q, k = q.repeat_interleave(group, dim=1), k.repeat_interleave(group, dim=1)
        q = l2_normalize(q) * (c.key_head_dim**-0.5)
        k = l2_normalize(k)
        beta = torch.sigmoid(self.in_proj_b(x)[0].float())  # [T, Hv]
        g = -self.A_log.float().exp() * F.softplus(self.in_proj_a(x)[0].float() + self.dt_bias.float())
        if t > 1:
            # Padding leaves the state alone: no write (β = 0) and no decay (g = 0).
            real = (torch.arange(t, dtype=torch.int32) < real_length(input_pos)).float()[:, None]
            beta, g = beta * real, g * real
        if t > 1 and c.prefill == "chunked" and not per_position:
            out, state = self._chunked(q, k, v, beta, g, recurrent.float()[0])
        else:
            out, state, states = self._unrolled(q, k, v, beta, g, recurrent.float())
        z = self.in_proj_z(x).reshape(t, c.num_value_heads, c.value_head_dim)
        out = self.norm(out.to(x.dtype), z).reshape(1, t, -1)
        new_conv = last_real(window, input_pos, self.keep).to(conv_state.dtype)
        projected = self.out_proj(out)
        new_state = (new_conv, state.to(recurrent.dtype))
        if not per_position:
            return projected, new_state
        steps = (
            states_per_position(window, self.keep, t).to(conv_state.dtype),
            torch.cat(states, dim=0).to(recurrent.dtype),
        )
        return projected, new_state, steps

    @staticmethod
    def _unrolled(q, k, v, beta, g, state):
        """One state update per token: (outputs [T, Hv, dv], final state [1, Hv, dk, dv], the state after each)."""
        outputs, states = [], []
        for i in range(q.shape[0]):
            state = state * g[i].exp()[None, :, None, None]
            k_i = k[i][None, :, None, :]  # [1, Hv, 1, dk]
            remembered = torch.matmul(k_i, state)  # [1, Hv, 1, dv]
            delta = (v[i][None, :, None, :] - remembered) * beta[i][None, :, None, None]
            state = state + k_i.transpose(-1, -2) * delta
            outputs.append(torch.matmul(q[i][None, :, None, :], state))  # [1, Hv, 1, dv]
            states.append(state)
        return torch.cat(outputs, dim=2)[0].transpose(0, 1), state, states

    def _chunked(self, q, k, v, beta, g, state):
        """`chunk_forward` over chunks of `chunk_size` tokens: (outputs [T, Hv, dv], final state [1, Hv, dk, dv])."""
        heads_first = [x.transpose(0, 1) for x in (q, k, v, beta, g)]  # [Hv, T, ...]
        outputs, t = [], q.shape[0]
        for start in range(0, t, self.cfg.chunk_size):
            end = min(start + self.cfg.chunk_size, t)
            out, state = chunk_forward(*(x[:, start:end] for x in heads_first), state)
            outputs.append(out)
        return torch.cat(outputs, dim=1).transpose(0, 1), state[None]
