"""Chunked cross-attention (CCA), following Listing 1 of Borgeaud et al. (2021).

The decoder's hidden states h [B, L, D] are cut into C chunks of M tokens. Attending chunk u is made of
the last token of chunk u and the first M-1 tokens of chunk u+1 (positions u*M + M-1 ... u*M + 2M-2);
it attends, with one softmax over all K*R keys, to the encoded neighbours E[u] [K, R, De] retrieved with
chunk u. The result is shifted back into place, so
- positions 0..M-2 (the first M-1 tokens, "chunk 1" in the paper) get zero: they pass through unchanged;
- position i >= M-1 reads E[(i - (M-1)) // M], whose retrieval used only tokens <= i (causal);
- the last attending chunk is zero-padded past L (padding dropped again); chunks no position reads
  (u >= L // M) need not be given: the model drops them (retro/model.py).

Relative positions (see retro/layers.py for RoPE): a neighbour is [retrieved chunk (M) | continuation],
and the retrieved chunk lines up with chunk u, so query i of attending chunk u (absolute position
u*M + M-1 + i) sits at neighbour position M-1+i. Queries are rotated at M-1+i and keys at j in 0..R-1:
the score depends on (M-1+i) - j, the offset between the query and the neighbour token as the paper's
relative encoding of Listing 1 does (there a learned function of the pair (i, j)).

Padding keys (neighbour token == pad) are masked; a query whose neighbours are all padding outputs zero,
which is exactly RETRO[OFF] for that chunk.

Deviation from the paper: the output projection starts at zero (`out_init="zero"`, the default of
`ModelConfig.cca_out_init`). The paper initialises CCA like any attention layer; then at step 0 every
CCA sublayer adds a random projection of the encoded neighbours to the residual stream, noise that a
no-retrieval baseline of the same decoder does not get. A zero output projection (as Flamingo's zero
tanh gate and ControlNet's zero convolutions do) makes a fresh RETRO compute exactly the function of
the same decoder without CCA; CCA then only adds what retrieval has been trained to contribute. The
projection still learns at once: its gradient is the attended values times the upstream gradient, not
zero (tests/test_model_forward.py); the queries, keys, values and the encoder get gradient from the
first update on. `out_init="normal"` is the paper's (and the previous) initialisation.
The measured effect on held-out bits per byte is in BENCHMARKS.md ("Retrieval on real text").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.layers import Attention

CCA_OUT_INITS = ("zero", "normal")


def attending_chunks(h: jax.Array, chunk_len: int, n_chunks: int) -> jax.Array:
    """h: [B, L, D] with L <= C*M + M-1 -> [B, C, M, D]: attending chunk u = h[u*M + M-1 : u*M + 2M-1]
    (zero-padded past L)."""
    b, length, d = h.shape
    m = chunk_len
    if length > n_chunks * m + m - 1:
        need = -(-(length - (m - 1)) // m)
        raise ValueError(f"sequence of {length} tokens needs >= {need} neighbour chunks, got {n_chunks}")
    h = jnp.pad(h, ((0, 0), (0, n_chunks * m + m - 1 - length), (0, 0)))[:, m - 1 :]
    return h.reshape(b, n_chunks, m, d)


def unchunk(out: jax.Array, length: int) -> jax.Array:
    """[B, C, M, D] attending-chunk outputs -> [B, L, D]: shifted right by M-1 (zeros first), cut to L."""
    b, c, m, d = out.shape
    out = out.reshape(b, c * m, d)
    return jnp.pad(out, ((0, 0), (m - 1, 0), (0, 0)))[:, :length]


class ChunkedCrossAttention(nnx.Module):
    """CCA from decoder states [B, L, D] to encoded neighbours [B, C, K, R, De]."""

    def __init__(
        self,
        d_model: int,
        enc_dim: int,
        n_heads: int,
        head_dim: int,
        chunk_len: int,
        *,
        rngs: nnx.Rngs,
        rope_base: float = 10000.0,
        out_init: str = "zero",
    ):
        """Queries from D, keys/values from the encoder width De, output back to D.

        out_init: "zero" (output projection starts at zero, see the module doc) or "normal" (the paper's).
        """
        if out_init not in CCA_OUT_INITS:
            raise ValueError(f"CCA out_init {out_init!r} must be one of {', '.join(CCA_OUT_INITS)}")
        self.chunk_len = chunk_len
        o_init = nnx.initializers.zeros if out_init == "zero" else None
        self.attn = Attention(
            d_model, enc_dim, d_model, n_heads, head_dim, rope_base=rope_base, o_init=o_init, rngs=rngs
        )

    def keys_values(self, enc: jax.Array, enc_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """enc: [..., K, R, De], enc_mask: [..., K, R] -> k, v [..., K*R, H, Dh] and mask [..., K*R].

        Computed once per chunk when decoding with a cache (retro/sampling.py).
        """
        *lead, kk, r, _ = enc.shape
        k, v = self.attn.keys_values(enc, np.arange(r))
        flat = (*lead, kk * r, *k.shape[-2:])
        return k.reshape(flat), v.reshape(flat), enc_mask.reshape(*lead, kk * r)

    def __call__(self, h: jax.Array, enc: jax.Array, enc_mask: jax.Array) -> jax.Array:
        """h: [B, L, D]; enc: [B, C, K, R, De]; enc_mask: bool [B, C, K, R] -> CCA output [B, L, D]."""
        b, length, _ = h.shape
        m, c = self.chunk_len, enc.shape[1]
        att = attending_chunks(h, m, c)  # [B, C, M, D]
        q = self.attn.query(att, np.arange(m) + (m - 1))  # [B, C, M, H, Dh]
        k, v, mask = self.keys_values(enc, enc_mask)  # [B, C, K*R, H, Dh]
        out = self.attn.attend(q, k, v, mask[:, :, None, None, :])  # [B, C, M, D]
        return unchunk(out, length)

    def step(self, h: jax.Array, offset: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
        """One decoding position: h [B, T, D] at offsets [T] inside the current attending chunk,
        k, v [B, K*R, H, Dh], mask [B, K*R] -> [B, T, D]. The caller zeroes positions < M-1."""
        q = self.attn.query(h, offset + (self.chunk_len - 1))
        return self.attn.attend(q, k, v, mask[:, None, None, :])
