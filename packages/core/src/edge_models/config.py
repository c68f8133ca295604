"""Model configuration dataclasses: everything a decoder or an encoder needs to know about its shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

NormKind = Literal["rms", "layer"]
Activation = Literal["silu", "gelu_tanh", "gelu", "relu"]
# "global"/"sliding": attention over the KV cache. "conv" (LFM2): a gated short convolution whose decode-time state
# is a rolling buffer of its last inputs instead of a KV cache. "linear" (Qwen3.5): gated delta-net linear attention,
# whose state is its convolution's buffer plus a recurrent matrix per head.
LayerType = Literal["global", "sliding", "conv", "linear"]
ATTENTION_LAYER_TYPES: tuple[LayerType, ...] = ("global", "sliding")


@dataclass(frozen=True)
class NormConfig:
    kind: NormKind = "rms"
    eps: float = 1e-6
    # Gemma stores RMSNorm weights as an offset from one: y = x_hat * (1 + w).
    zero_centered: bool = False
    bias: bool = False  # LayerNorm only
    # False: RMS normalisation with no learned weight (Gemma 4's V norm).
    scale: bool = True


@dataclass(frozen=True)
class RopeConfig:
    base: float = 10_000.0
    # Fraction of head_dim that is rotated (Phi-2 rotates 40%).
    rotary_fraction: float = 1.0
    # None, or {"rope_type": "llama3"|"linear", ...} with the HF field names.
    scaling: dict | None = None
    # Base used by sliding-window layers (Gemma 3); None means `base`.
    local_base: float | None = None
    # Sliding layers of Gemma 3 never use the long-context scaling.
    local_scaling: dict | None = None


@dataclass(frozen=True)
class AttentionConfig:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    out_bias: bool = False
    # Norm applied per head to q and k before RoPE (Gemma 3).
    qk_norm: NormConfig | None = None
    # Multiplier applied to q; None means head_dim ** -0.5. Gemma derives it from query_pre_attn_scalar; Granite's
    # attention_multiplier is this scale itself.
    query_scale: float | None = None
    logit_softcap: float | None = None
    sliding_window: int | None = None
    # Norm applied per head to v (Gemma 4: RMS without a weight).
    v_norm: NormConfig | None = None
    # Values are the key projection's output, before the k norm and RoPE (Gemma 4's larger models): no v_proj.
    k_eq_v: bool = False
    # Qwen3.5: q_proj also yields a gate per head (rows [q | gate] per head); the output is multiplied by its sigmoid.
    output_gate: bool = False


@dataclass(frozen=True)
class PerLayerEmbeddingConfig:
    """Gemma 3n / 4 per-layer inputs: a second token table [vocab_size, num_layers * dim], read one row per token,
    combined with a projection of the token embedding, and gated into every decoder block's output."""

    dim: int
    vocab_size: int


@dataclass(frozen=True)
class ShortConvConfig:
    """LFM2's gated short convolution: in_proj gives B, C and x; y = C * conv(B * x), a causal depthwise convolution
    over the last `kernel_size` inputs; its state between calls is the last `kernel_size - 1` inputs."""

    kernel_size: int = 3
    bias: bool = False

    def __post_init__(self) -> None:
        if self.kernel_size < 2:
            raise ValueError(f"a short convolution needs kernel_size >= 2 (it has state), got {self.kernel_size}")


@dataclass(frozen=True)
class GatedDeltaNetConfig:
    """Qwen3.5's gated delta-net: a causal depthwise convolution (+ SiLU) over q, k and v, L2-normalised q and k, a
    per-head decay and write strength, the delta-rule update of a [key_head_dim, value_head_dim] state per value head,
    and an RMSNorm gated by silu(z)."""

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel_size: int = 4
    norm_eps: float = 1e-6
    # How a call of several tokens (prefill) runs the delta rule: "chunked", `chunk_size` tokens at a time in matrix
    # form (layers.gated_delta_net says how), or "unrolled", one state update per token. Chunked is the default: on the
    # tiny model it converted prefill_128 in 42 s against 150 s, ran prefill 1.4-1.5x faster and was as exact (3e-6
    # of transformers). Decode, and verify's per-token states, run unrolled either way.
    prefill: str = "chunked"
    chunk_size: int = 64

    def __post_init__(self) -> None:
        if self.prefill not in ("unrolled", "chunked"):
            raise ValueError(f"delta-net prefill must be 'unrolled' or 'chunked', got {self.prefill!r}")
        if self.chunk_size < 1:
            raise ValueError(f"delta-net chunk_size must be positive, got {self.chunk_size}")
        if self.num_value_heads % self.num_key_heads:
            raise ValueError(
                f"num_value_heads ({self.num_value_heads}) must be a multiple of num_key_heads ({self.num_key_heads})"
            )
        if self.conv_kernel_size < 2:
            raise ValueError(f"the delta-net convolution needs kernel_size >= 2, got {self.conv_kernel_size}")

    @property
    def conv_channels(self) -> int:
        return 2 * self.num_key_heads * self.key_head_dim + self.num_value_heads * self.value_head_dim


@dataclass(frozen=True)
class MLPConfig:
    intermediate_size: int
    activation: Activation = "silu"
    gated: bool = True
    bias: bool = False


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer: shared by every model family."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    attention: AttentionConfig
    mlp: MLPConfig
    norm: NormConfig = field(default_factory=NormConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    # "sequential": x += attn(norm(x)); x += mlp(norm(x)).
    # "parallel" (Phi-2): x += attn(norm(x)) + mlp(norm(x)) with one shared norm.
    block: Literal["sequential", "parallel"] = "sequential"
    # Gemma 2/3 normalise the attention and MLP outputs before the residual add.
    post_attention_norm: bool = False
    post_mlp_norm: bool = False
    embedding_scale: bool = False  # multiply embeddings by sqrt(hidden_size)
    # Granite's muP constants: embeddings times `embedding_multiplier`, each attention and MLP output times
    # `residual_multiplier` before its residual add, logits divided by `logit_divisor` (its `logits_scaling`).
    # 1.0 leaves the graph as it was.
    embedding_multiplier: float = 1.0
    residual_multiplier: float = 1.0
    logit_divisor: float = 1.0
    tie_embeddings: bool = False
    lm_head_bias: bool = False
    final_logit_softcap: float | None = None
    # One entry per layer; None means every layer attends globally.
    layer_types: tuple[LayerType, ...] | None = None
    # The "conv" layers' convolution (LFM2); None when no layer is one.
    short_conv: ShortConvConfig | None = None
    # The "linear" layers' gated delta-net (Qwen3.5); None when no layer is one.
    delta_net: GatedDeltaNetConfig | None = None
    # Layers whose attention takes q and k unrotated (NoPE): SmolLM3 leaves out RoPE on every 4th layer.
    nope_layers: tuple[int, ...] = ()
    max_seq_len: int = 2048
    # Attention of the global layers where it differs from the sliding ones (Gemma 4: wider heads, own KV heads);
    # None: every layer uses `attention`.
    global_attention: AttentionConfig | None = None
    # The last `kv_shared_layers` layers have no keys or values of their own: each reads the cache of the last
    # earlier layer of its type (Gemma 3n / 4). The cache holds entries for the other layers only.
    kv_shared_layers: int = 0
    # Multiplier of intermediate_size on the KV-sharing layers (Gemma 4's double-wide MLP: 2).
    kv_shared_mlp_multiplier: int = 1
    per_layer_embedding: PerLayerEmbeddingConfig | None = None
    # A learned scalar multiplying each block's output (Gemma 4).
    layer_scalar: bool = False

    def __post_init__(self) -> None:
        a = self.attention
        if a.num_heads % a.num_kv_heads:
            raise ValueError(f"num_heads ({a.num_heads}) must be a multiple of num_kv_heads ({a.num_kv_heads})")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers:
                raise ValueError(
                    f"layer_types has {len(self.layer_types)} entries, expected num_layers={self.num_layers}"
                )
            if "sliding" in self.layer_types and not a.sliding_window:
                raise ValueError("sliding layers need attention.sliding_window")
            if "conv" in self.layer_types and self.short_conv is None:
                raise ValueError("conv layers need short_conv")
            if "linear" in self.layer_types and self.delta_net is None:
                raise ValueError("linear layers need delta_net")
            if self.block == "parallel" and set(self.layer_types) - set(ATTENTION_LAYER_TYPES):
                raise ValueError("the parallel block mixes with attention only")
        if self.block == "parallel" and (self.post_attention_norm or self.post_mlp_norm):
            raise ValueError("the parallel block has no post norms")
        outside = [i for i in self.nope_layers if not 0 <= i < self.num_layers]
        if outside:
            raise ValueError(f"nope_layers {outside} are not layers of a {self.num_layers}-layer model")
        if self.logit_divisor == 0:
            raise ValueError("logit_divisor must not be 0")
        g = self.global_attention
        if g is not None and g.num_heads % g.num_kv_heads:
            raise ValueError(
                f"global_attention.num_heads ({g.num_heads}) must be a multiple of num_kv_heads ({g.num_kv_heads})"
            )
        if not 0 <= self.kv_shared_layers < self.num_layers:
            raise ValueError(f"kv_shared_layers ({self.kv_shared_layers}) must leave at least one layer with a cache")
        if self.kv_shared_layers:
            missing = {self.layer_type(i) for i in range(self.num_layers)} - {
                self.layer_type(i) for i in range(self.first_kv_shared_layer)
            }
            if missing:
                raise ValueError(f"KV-sharing layers of type {sorted(missing)} have no earlier layer to read from")
        if self.kv_shared_mlp_multiplier < 1:
            raise ValueError("kv_shared_mlp_multiplier must be at least 1")

    def layer_type(self, index: int) -> LayerType:
        return "global" if self.layer_types is None else self.layer_types[index]

    def attention_for(self, index: int) -> AttentionConfig:
        """The attention settings of layer `index`."""
        if self.global_attention is not None and self.layer_type(index) == "global":
            return self.global_attention
        return self.attention

    @property
    def first_kv_shared_layer(self) -> int:
        return self.num_layers - self.kv_shared_layers

    def kv_source(self, index: int) -> int:
        """The layer whose cache layer `index` reads: itself, or for a KV-sharing layer the last earlier layer of
        its type that keeps a cache."""
        first = self.first_kv_shared_layer
        if index < first:
            return index
        kind = self.layer_type(index)
        return max(i for i in range(first) if self.layer_type(i) == kind)

    def mlp_for(self, index: int) -> MLPConfig:
        if self.kv_shared_mlp_multiplier != 1 and index >= self.first_kv_shared_layer:
            return dataclasses.replace(
                self.mlp, intermediate_size=self.mlp.intermediate_size * self.kv_shared_mlp_multiplier
            )
        return self.mlp

    @property
    def rotary_dim(self) -> int:
        dim = int(self.attention.head_dim * self.rope.rotary_fraction)
        return dim - dim % 2

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        """Parameter count computed from the shape, without building the model."""
        d = self.hidden_size
        norm = d * (2 if self.norm.bias else 1)
        norms_per_layer = 1 if self.block == "parallel" else 2
        norms_per_layer += int(self.post_attention_norm) + int(self.post_mlp_norm)
        total = sum(self._layer_parameters(i) for i in range(self.num_layers))
        total += self.num_layers * norms_per_layer * norm + self.vocab_size * d + norm
        if not self.tie_embeddings:
            total += self.vocab_size * d
        if self.lm_head_bias:
            total += self.vocab_size
        ple = self.per_layer_embedding
        if ple is not None:
            packed = self.num_layers * ple.dim
            total += ple.vocab_size * packed + d * packed + ple.dim
            total += self.num_layers * (2 * d * ple.dim + d)
        return total

    def _layer_parameters(self, index: int) -> int:
        a, m, d = self.attention_for(index), self.mlp_for(index), self.hidden_size
        q, kv = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
        has_kv = index < self.first_kv_shared_layer
        kv_tensors = (1 if a.k_eq_v else 2) if has_kv else 0
        attn = d * (q * (2 if a.output_gate else 1) + kv_tensors * kv) + q * d
        if a.qkv_bias:
            attn += q + kv_tensors * kv
        if a.out_bias:
            attn += d
        if a.qk_norm is not None:
            attn += (2 if has_kv else 1) * a.head_dim
        mlp = d * m.intermediate_size * (3 if m.gated else 2)
        if m.bias:
            mlp += m.intermediate_size * (2 if m.gated else 1) + d
        layer_type = self.layer_types[index] if self.layer_types else None
        if layer_type == "conv":
            c = self.short_conv
            attn = 4 * d * d + d * c.kernel_size + (5 * d if c.bias else 0)
        elif layer_type == "linear":
            n = self.delta_net
            value = n.num_value_heads * n.value_head_dim
            attn = d * (n.conv_channels + value + 2 * n.num_value_heads) + value * d
            attn += n.conv_channels * n.conv_kernel_size + 2 * n.num_value_heads + n.value_head_dim
        return attn + mlp + int(self.layer_scalar)


PoolingMode = Literal["mean", "cls", "max"]


@dataclass(frozen=True)
class PoolingConfig:
    """How token states become one embedding (sentence-transformers' `1_Pooling/config.json` + `Normalize`)."""

    mode: PoolingMode = "mean"
    normalize: bool = False  # L2-normalise the pooled vector


@dataclass(frozen=True)
class EncoderConfig:
    """A bidirectional encoder (BERT): learned absolute positions and token types, post-norm blocks, pooling.

    Attention, feed-forward and norm take the decoder's config types; only what an encoder adds is here."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    attention: AttentionConfig
    mlp: MLPConfig
    norm: NormConfig = field(default_factory=lambda: NormConfig(kind="layer", eps=1e-12, bias=True))
    max_positions: int = 512
    type_vocab_size: int = 2
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        a = self.attention
        if a.num_heads != a.num_kv_heads:
            raise ValueError("an encoder's attention has as many key/value heads as query heads")
        if a.num_heads * a.head_dim != self.hidden_size:
            raise ValueError(
                f"num_heads ({a.num_heads}) x head_dim ({a.head_dim}) must equal hidden_size ({self.hidden_size})"
            )
        if self.mlp.gated:
            raise ValueError("an encoder's feed-forward is a plain two-layer MLP (gated=False)")
        if self.max_positions < 1 or self.type_vocab_size < 1:
            raise ValueError("max_positions and type_vocab_size must be at least 1")

    def replace(self, **changes) -> EncoderConfig:
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        d, m = self.hidden_size, self.mlp.intermediate_size
        norm = 2 * d
        a = self.attention
        attn = 4 * d * d + (3 * d if a.qkv_bias else 0) + (d if a.out_bias else 0)
        mlp = 2 * d * m + ((m + d) if self.mlp.bias else 0)
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * d + norm
        return embeddings + self.num_layers * (attn + mlp + 2 * norm)


@dataclass(frozen=True)
class RelativePositionConfig:
    """T5's learned relative position bias: distances fall into `num_buckets` buckets (exact for short distances,
    log-spaced up to `max_distance`), one learned bias per bucket and head."""

    num_buckets: int = 32
    max_distance: int = 128


@dataclass(frozen=True)
class Seq2SeqConfig:
    """An encoder-decoder (T5): pre-norm blocks with RMS norms, relative position bias shared by the layers of each
    stack, cross-attention from every decoder block to the encoder's output."""

    vocab_size: int
    hidden_size: int
    num_encoder_layers: int
    num_decoder_layers: int
    attention: AttentionConfig
    mlp: MLPConfig
    norm: NormConfig = field(default_factory=lambda: NormConfig(kind="rms", eps=1e-6))
    relative_position: RelativePositionConfig = field(default_factory=RelativePositionConfig)
    # The LM head reads the shared embedding (else a matrix of its own).
    tie_embeddings: bool = True
    # The decoder's output is multiplied by hidden_size ** -0.5 before the head (T5 v1.0; not v1.1 / FLAN-T5).
    head_scale: bool = True
    decoder_start_token_id: int = 0
    eos_token_id: int = 1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        a = self.attention
        if a.num_heads != a.num_kv_heads:
            raise ValueError("a seq2seq model's attention has as many key/value heads as query heads")
        if self.num_encoder_layers < 1 or self.num_decoder_layers < 1:
            raise ValueError("both stacks need at least one layer")

    def replace(self, **changes) -> Seq2SeqConfig:
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        d, a = self.hidden_size, self.attention
        attn = 4 * d * a.num_heads * a.head_dim
        mlp = d * self.mlp.intermediate_size * (3 if self.mlp.gated else 2)
        encoder = self.num_encoder_layers * (attn + mlp + 2 * d) + d
        decoder = self.num_decoder_layers * (2 * attn + mlp + 3 * d) + d
        bias = 2 * self.relative_position.num_buckets * a.num_heads
        head = 0 if self.tie_embeddings else self.vocab_size * d
        return self.vocab_size * d + encoder + decoder + bias + head
