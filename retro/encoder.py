"""The bidirectional neighbour encoder with query conditioning (the paper's Encoder, Algorithm 1).

Each retrieved neighbour (R tokens: chunk + continuation) of chunk u is encoded on its own:
bidirectional self-attention within the neighbour (padding keys masked), then cross-attention to the
decoder activations H_u [M, D] of the chunk that retrieved it (taken after self-attention of the first
CCA layer), then a feed-forward block. The paper uses 2 such layers. The token embedding is the
decoder's (shared, as in the paper), projected to the encoder width when it differs.

Relative positions: RoPE in self-attention; in cross-attention the neighbour's token j and the chunk's
token p are rotated at j and p, since the neighbour's first M tokens line up with the chunk that
retrieved it.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from retro.layers import Attention, FeedForward


class EncoderLayer(nnx.Module):
    """Self-attention over the neighbour, cross-attention to its chunk, feed-forward (pre-norm residuals)."""

    def __init__(
        self, enc_dim: int, d_model: int, n_heads: int, *, rngs: nnx.Rngs, rope_base: float = 10000.0
    ):
        """enc_dim: encoder width; d_model: width of the decoder activations it conditions on."""
        head_dim = enc_dim // n_heads
        self.norm_self = nnx.RMSNorm(enc_dim, rngs=rngs)
        self.self_attn = Attention(
            enc_dim, enc_dim, enc_dim, n_heads, head_dim, rope_base=rope_base, rngs=rngs
        )
        self.norm_cross = nnx.RMSNorm(enc_dim, rngs=rngs)
        self.cross_attn = Attention(
            enc_dim, d_model, enc_dim, n_heads, head_dim, rope_base=rope_base, rngs=rngs
        )
        self.norm_ff = nnx.RMSNorm(enc_dim, rngs=rngs)
        self.ffw = FeedForward(enc_dim, 4 * enc_dim, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array, ctx: jax.Array) -> jax.Array:
        """x: [..., K, R, De]; mask: bool [..., K, R]; ctx: normalised chunk activations [..., M, D]."""
        r, m = x.shape[-2], ctx.shape[-2]
        pos_r = np.arange(r)
        h = self.norm_self(x)
        x = x + self.self_attn.self_attend(h, mask[..., None, None, :], pos_r)
        # query conditioning: every neighbour of chunk u attends to the same H_u (broadcast over K)
        x = x + self.cross_attn(self.norm_cross(x), ctx[..., None, :, :], None, pos_r, np.arange(m))
        return x + self.ffw(self.norm_ff(x))


class NeighbourEncoder(nnx.Module):
    """Encodes neighbour embeddings [..., K, R, D] conditioned on chunk activations [..., M, D]."""

    def __init__(
        self,
        d_model: int,
        enc_dim: int,
        n_layers: int,
        n_heads: int,
        *,
        rngs: nnx.Rngs,
        rope_base: float = 10000.0,
    ):
        """d_model: decoder width (embeddings and H); enc_dim: encoder width; n_layers: 2 in the paper."""
        self.proj_in = nnx.Linear(d_model, enc_dim, use_bias=False, rngs=rngs) if enc_dim != d_model else None
        self.ctx_norm = nnx.RMSNorm(d_model, rngs=rngs)
        self.layers = nnx.List(
            [EncoderLayer(enc_dim, d_model, n_heads, rope_base=rope_base, rngs=rngs) for _ in range(n_layers)]
        )
        self.final_norm = nnx.RMSNorm(enc_dim, rngs=rngs)

    def __call__(self, emb: jax.Array, mask: jax.Array, ctx: jax.Array) -> jax.Array:
        """emb: [B, C, K, R, D] neighbour token embeddings; mask: bool [B, C, K, R] (False = padding);
        ctx: decoder activations of the retrieving chunks [B, C, M, D]. Returns E [B, C, K, R, De]."""
        x = self.proj_in(emb) if self.proj_in is not None else emb
        ctx = self.ctx_norm(ctx)
        for layer in self.layers:
            x = layer(x, mask, ctx)
        return self.final_norm(x)
