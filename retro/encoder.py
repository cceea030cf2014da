"""The bidirectional neighbour encoder with query conditioning (the paper's Encoder, Algorithm 1).

Each retrieved neighbour (R tokens: chunk + continuation) of chunk u is encoded on its own:
bidirectional self-attention within the neighbour (padding keys masked), then, in the layers of
`ModelConfig.enc_cross_set()`, cross-attention to the decoder activations H_u [M, D] of chunk u, the
chunk that retrieved it (taken after self-attention of the first CCA layer), then a feed-forward
block. The paper uses 2 such layers.

Two deviations from the paper, both options of ModelConfig with the paper's choice available:
- cross-attention to H_u in every layer by default (`enc_cross_layers=None`); the paper conditions
  once, in the first layer (Table 10, P_enc = [1]): `enc_cross_layers=[1]`. The default is kept so
  trained runs and the BENCHMARKS.md figures stay as they are;
- the token embedding is the decoder's by default (`shared_embeddings=True`), projected to the encoder
  width when it differs; the paper's encoder has its own embedding, disjoint from the decoder's
  (App. B.1.4): `shared_embeddings=False` gives the encoder an embedding at its own width.

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
    """Self-attention over the neighbour, cross-attention to its chunk (if `cross`), feed-forward
    (pre-norm residuals)."""

    def __init__(
        self,
        enc_dim: int,
        d_model: int,
        n_heads: int,
        *,
        rngs: nnx.Rngs,
        rope_base: float = 10000.0,
        cross: bool = True,
    ):
        """enc_dim: encoder width; d_model: width of the decoder activations it conditions on;
        cross: whether this layer cross-attends to them (without it the layer has no such weights)."""
        head_dim = enc_dim // n_heads
        self.norm_self = nnx.RMSNorm(enc_dim, rngs=rngs)
        self.self_attn = Attention(
            enc_dim, enc_dim, enc_dim, n_heads, head_dim, rope_base=rope_base, rngs=rngs
        )
        self.norm_cross: nnx.RMSNorm | None = nnx.data(None)
        self.cross_attn: Attention | None = nnx.data(None)
        if cross:
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
        if self.cross_attn is not None:
            # query conditioning: every neighbour of chunk u attends to the same H_u (broadcast over K)
            x = x + self.cross_attn(self.norm_cross(x), ctx[..., None, :, :], None, pos_r, np.arange(m))
        return x + self.ffw(self.norm_ff(x))


class NeighbourEncoder(nnx.Module):
    """Encodes neighbour tokens [..., K, R] conditioned on chunk activations [..., M, D]."""

    def __init__(
        self,
        d_model: int,
        enc_dim: int,
        n_layers: int,
        n_heads: int,
        *,
        rngs: nnx.Rngs,
        rope_base: float = 10000.0,
        cross_layers: tuple[int, ...] | None = None,
        vocab_size: int | None = None,
        init_std: float = 0.02,
    ):
        """d_model: decoder width (H, and the shared embedding); enc_dim: encoder width; n_layers: 2 in
        the paper; cross_layers: 1-indexed layers that cross-attend to H (None = all);
        vocab_size: given = the encoder's own (disjoint) embedding [V, De], as in the paper;
        None = the decoder's embedding is passed in (projected to De when the widths differ)."""
        self.embed = (
            nnx.Embed(vocab_size, enc_dim, embedding_init=nnx.initializers.normal(init_std), rngs=rngs)
            if vocab_size is not None
            else None
        )
        self.proj_in = (
            nnx.Linear(d_model, enc_dim, use_bias=False, rngs=rngs)
            if self.embed is None and enc_dim != d_model
            else None
        )
        self.ctx_norm = nnx.RMSNorm(d_model, rngs=rngs)
        cross = set(range(1, n_layers + 1)) if cross_layers is None else set(cross_layers)
        self.layers = nnx.List(
            [
                EncoderLayer(enc_dim, d_model, n_heads, rope_base=rope_base, cross=i + 1 in cross, rngs=rngs)
                for i in range(n_layers)
            ]
        )
        self.final_norm = nnx.RMSNorm(enc_dim, rngs=rngs)

    def embed_neighbours(self, neighbours: jax.Array, decoder_embed: nnx.Embed) -> jax.Array:
        """neighbours: token ids [..., K, R] -> [..., K, R, De] through the encoder's own embedding, or
        the decoder's (`decoder_embed`, shared) projected to the encoder width."""
        if self.embed is not None:
            return self.embed(neighbours)
        x = decoder_embed(neighbours)
        return self.proj_in(x) if self.proj_in is not None else x

    def __call__(self, x: jax.Array, mask: jax.Array, ctx: jax.Array) -> jax.Array:
        """x: [B, C, K, R, De] neighbour embeddings (`embed_neighbours`); mask: bool [B, C, K, R]
        (False = padding); ctx: decoder activations of the retrieving chunks [B, C, M, D], ctx[:, u]
        those of chunk u. Returns E [B, C, K, R, De]."""
        ctx = self.ctx_norm(ctx)
        for layer in self.layers:
            x = layer(x, mask, ctx)
        return self.final_norm(x)
