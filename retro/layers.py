"""Building blocks: rotary positions, masked multi-head attention and the feed-forward block.

Relative positions: rotary embeddings (RoPE, Su et al. 2021) everywhere, in decoder self-attention,
in the encoder and in CCA. The paper uses Transformer-XL style relative encodings; RoPE gives the same
property (a query-key score depends on positions only through their difference) with no parameters,
no [L, L] bias tensor to materialise, and it works unchanged with a KV cache (keys are rotated once,
at their absolute position). That is the reason for the deviation.

Shapes: B batch, L length (queries), S keys, H heads, D model dim; leading dims `...` are batch-like.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NEG_INF = -1e30


def rope_tables(pos: jax.Array | np.ndarray, half: int, base: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin of the rotation angles, each [..., L, 1, Dh/2] for positions pos [..., L].

    Static positions (a numpy array: training, the encoder, CCA queries) give tables that are
    constants of the compiled program; traced positions (decoding at a cache offset) are computed in
    the program. Both in f32 with the same formula. (A table computed in the program from an iota is
    fused by XLA into every rotation, which then evaluates cos and sin again for each batch element
    and head: 8% of a training step.)
    """
    if isinstance(pos, np.ndarray):
        freq = np.float32(base) ** (-np.arange(half, dtype=np.float32) / np.float32(half))
        angle = pos.astype(np.float32)[..., None, None] * freq
        return jnp.asarray(np.cos(angle)), jnp.asarray(np.sin(angle))
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [Dh/2]
    angle = jnp.asarray(pos, jnp.float32)[..., None, None] * freq  # [..., L, 1, Dh/2]
    return jnp.cos(angle), jnp.sin(angle)


def rope(x: jax.Array, pos: jax.Array | np.ndarray, base: float = 10000.0) -> jax.Array:
    """Rotate query/key pairs by their positions.

    x: [..., L, H, Dh]; pos: integer positions broadcastable to [..., L] (numpy for static positions,
    see `rope_tables`). Returns x's shape and dtype.
    """
    half = x.shape[-1] // 2
    cos, sin = rope_tables(pos, half, base)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.astype(x.dtype)


def dense(x: jax.Array, kernel: jax.Array, n_in: int = 1) -> jax.Array:
    """x [..., *in] @ kernel [*in, *out] -> [..., *out] as one 2-D matmul [N, in] @ [in, out].

    `n_in` trailing dims of x are contracted with the leading dims of the kernel. Flattening the batch
    dims first keeps every dot (and its gradients, which contract over N) a plain 2-D matmul: XLA:CPU
    otherwise canonicalises a dot contracting several batch dims by copying a transposed activation.
    """
    lead, fin = x.shape[: x.ndim - n_in], kernel.shape[:n_in]
    size_in = 1
    for s in fin:
        size_in *= s
    y = x.reshape(-1, size_in) @ kernel.reshape(size_in, -1)
    return y.reshape(*lead, *kernel.shape[n_in:])


def dot_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Softmax attention with a boolean mask; a query whose keys are all masked outputs exactly zero.

    q: [..., L, H, Dh]; k, v: [..., S, H, Dh]; mask: bool broadcastable to [..., H, L, S] (True = attend).
    Returns [..., L, H, Dh]. Leading dims broadcast (the encoder attends K neighbours to one chunk).
    """
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)  # scale the [L, Dh] queries, not the [L, S] scores
    logits = jnp.einsum("...qhd,...shd->...hqs", q, k)
    if mask is not None:
        logits = jnp.where(mask, logits, NEG_INF)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    # a static mask (the causal one) in which every query sees a key needs no zeroing pass
    if mask is not None and not (isinstance(mask, np.ndarray) and mask.any(axis=-1).all()):
        weights = jnp.where(jnp.any(mask, axis=-1, keepdims=True), weights, 0.0)
    return jnp.einsum("...hqs,...shd->...qhd", weights.astype(v.dtype), v)


class Attention(nnx.Module):
    """Multi-head attention from a query stream (width q_dim) to a context stream (width kv_dim).

    Used as causal self-attention in the decoder, bidirectional self-attention and query-conditioning
    cross-attention in the encoder, and chunked cross-attention in the decoder (retro/cca.py).
    The projections are `nnx.Einsum` parameters applied as 2-D matmuls (`dense`); self-attention
    (`self_attend`, `qkv`) concatenates the q, k, v kernels into one [q_dim, 3*H*Dh] matmul.
    """

    def __init__(
        self,
        q_dim: int,
        kv_dim: int,
        out_dim: int,
        n_heads: int,
        head_dim: int,
        *,
        rngs: nnx.Rngs,
        rope_base: float = 10000.0,
        o_init: nnx.Initializer | None = None,
    ):
        """Projections q: [q_dim, H, Dh], k and v: [kv_dim, H, Dh], out: [H, Dh, out_dim].

        o_init: initializer of the output projection; None = normal with std (H*Dh)^-0.5.
        """
        self.rope_base = rope_base
        q_init = nnx.initializers.normal(q_dim**-0.5)
        kv_init = nnx.initializers.normal(kv_dim**-0.5)
        if o_init is None:
            o_init = nnx.initializers.normal((n_heads * head_dim) ** -0.5)
        self.wq = nnx.Einsum("...ld,dhk->...lhk", (q_dim, n_heads, head_dim), kernel_init=q_init, rngs=rngs)
        self.wk = nnx.Einsum("...ld,dhk->...lhk", (kv_dim, n_heads, head_dim), kernel_init=kv_init, rngs=rngs)
        self.wv = nnx.Einsum("...ld,dhk->...lhk", (kv_dim, n_heads, head_dim), kernel_init=kv_init, rngs=rngs)
        self.wo = nnx.Einsum("...lhk,hkd->...ld", (n_heads, head_dim, out_dim), kernel_init=o_init, rngs=rngs)

    def query(self, x: jax.Array, pos: jax.Array) -> jax.Array:
        """x: [..., L, q_dim], pos: [..., L] -> rotated queries [..., L, H, Dh]."""
        return rope(dense(x, self.wq.kernel[...]), pos, self.rope_base)

    def keys_values(self, ctx: jax.Array, pos: jax.Array) -> tuple[jax.Array, jax.Array]:
        """ctx: [..., S, kv_dim], pos: [..., S] -> rotated keys and values, each [..., S, H, Dh]."""
        kv = dense(ctx, jnp.stack([self.wk.kernel[...], self.wv.kernel[...]], axis=1))  # [..., S, 2, H, Dh]
        return rope(kv[..., 0, :, :], pos, self.rope_base), kv[..., 1, :, :]

    def qkv(self, x: jax.Array, pos: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Self-attention projections in one matmul: x [..., L, D], pos [..., L] -> rotated q, k and v,
        each [..., L, H, Dh] (requires q_dim == kv_dim)."""
        w = jnp.stack([self.wq.kernel[...], self.wk.kernel[...], self.wv.kernel[...]], axis=1)
        qkv = dense(x, w)  # [..., L, 3, H, Dh]
        q = rope(qkv[..., 0, :, :], pos, self.rope_base)
        return q, rope(qkv[..., 1, :, :], pos, self.rope_base), qkv[..., 2, :, :]

    def attend(self, q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
        """Attention from projected q [..., L, H, Dh] to k, v [..., S, H, Dh] -> [..., L, out_dim]."""
        return dense(dot_attention(q, k, v, mask), self.wo.kernel[...], n_in=2)

    def self_attend(self, x: jax.Array, mask: jax.Array | None, pos: jax.Array) -> jax.Array:
        """Self-attention: x [..., L, D], mask broadcastable to [..., H, L, L], pos [..., L] -> [..., L, out_dim]."""
        q, k, v = self.qkv(x, pos)
        return self.attend(q, k, v, mask)

    def __call__(
        self, x: jax.Array, ctx: jax.Array, mask: jax.Array | None, q_pos: jax.Array, k_pos: jax.Array
    ) -> jax.Array:
        """x: [..., L, q_dim], ctx: [..., S, kv_dim], mask broadcastable to [..., H, L, S] -> [..., L, out_dim]."""
        k, v = self.keys_values(ctx, k_pos)
        return self.attend(self.query(x, q_pos), k, v, mask)


class FeedForward(nnx.Module):
    """Position-wise GELU MLP: [..., D] -> [..., d_ff] -> [..., D] (the paper's FFW), as 2-D matmuls."""

    def __init__(self, d_model: int, d_ff: int, *, rngs: nnx.Rngs):
        """Two bias-free projections D -> d_ff -> D."""
        self.up = nnx.Linear(d_model, d_ff, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(d_ff, d_model, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [..., D] -> [..., D]."""
        return dense(jax.nn.gelu(dense(x, self.up.kernel[...])), self.down.kernel[...])


def _xent_blocks(x, w, targets, weights, block):
    """Loss and its gradients (dx [N, D], dw [D, V]) in row blocks of `block` (see readout_xent)."""
    n, d = x.shape
    nb = -(-n // block)
    pad = nb * block - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(nb, block, d)
    tb = jnp.pad(targets, (0, pad)).reshape(nb, block)
    wb = jnp.pad(weights.astype(jnp.float32), (0, pad)).reshape(nb, block)

    def body(dw, inp):
        xi, ti, wi = inp
        logits = xi @ w  # [block, V], f32
        top = jnp.max(logits, axis=-1, keepdims=True)
        e = jnp.exp(logits - top)
        s = jnp.sum(e, axis=-1, keepdims=True)
        nll = top[:, 0] + jnp.log(s[:, 0]) - jnp.take_along_axis(logits, ti[:, None], axis=-1)[:, 0]
        g = (e / s - jax.nn.one_hot(ti, w.shape[1], dtype=e.dtype)) * wi[:, None]  # d loss / d logits
        return dw + xi.T @ g, (jnp.sum(nll * wi), g @ w.T)

    # unrolled: straight-line code that XLA's cost analysis counts in full (it counts a loop body once)
    dw, (loss, dx) = jax.lax.scan(body, jnp.zeros_like(w), (xb, tb, wb), unroll=True)
    return jnp.sum(loss), dx.reshape(nb * block, d)[:n], dw


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def readout_xent(x: jax.Array, w: jax.Array, targets: jax.Array, weights: jax.Array, block: int = 1024):
    """sum_i weights[i] * NLL of targets[i] under softmax(x[i] @ w), fused with its gradient.

    x: [N, D] final states; w: [D, V] readout; targets: int [N]; weights: [N] (e.g. mask / count; no
    gradient flows to targets or weights). Returns a scalar. The [N, V] logits never exist at once:
    rows go through in blocks of ~`block`, and each block's gradient (softmax - one-hot) is turned into
    dx and dw right away, while its logits are still in cache; the backward pass only scales them by
    the incoming cotangent. The same matmuls as readout + softmax cross-entropy + their backward
    (no recomputation), in f32.
    """
    return _xent_blocks(x, w, targets, weights, _block_rows(x.shape[0], block))[0]


def _block_rows(n: int, block: int) -> int:
    """Rows per block: ~`block`, split evenly so padding is at most a few rows."""
    nb = max(1, round(n / block))
    return -(-n // nb)


def _readout_xent_fwd(x, w, targets, weights, block):
    loss, dx, dw = _xent_blocks(x, w, targets, weights, _block_rows(x.shape[0], block))
    return loss, (dx, dw)


def _readout_xent_bwd(block, res, ct):
    dx, dw = res
    return ct * dx, ct * dw, None, None


readout_xent.defvjp(_readout_xent_fwd, _readout_xent_bwd)


def causal_mask(q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
    """Bool [L, S]: query at q_pos[i] may see key at k_pos[j] iff k_pos[j] <= q_pos[i]."""
    return k_pos[None, :] <= q_pos[:, None]
