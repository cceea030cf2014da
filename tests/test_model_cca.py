"""Golden tests of chunked cross-attention against Listing 1 of the RETRO paper."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.cca import ChunkedCrossAttention, attending_chunks, unchunk
from retro.layers import rope


def test_attending_chunks_positions():
    # M=3, L=9 (C=3): attending chunk u = last token of chunk u + first 2 tokens of chunk u+1
    h = jnp.arange(9, dtype=jnp.float32).reshape(1, 9, 1)
    att = np.asarray(attending_chunks(h, 3, 3))[0, :, :, 0]
    np.testing.assert_array_equal(att, [[2, 3, 4], [5, 6, 7], [8, 0, 0]])
    # shifting back: position i gets attending-chunk row (i - 2), the first M-1 = 2 positions get zero
    back = np.asarray(unchunk(attending_chunks(h, 3, 3), 9))[0, :, 0]
    np.testing.assert_array_equal(back, [0, 0, 2, 3, 4, 5, 6, 7, 8])


def _identity_cca(m, d):
    """CCA with 1 head, zero queries (uniform attention), identity values and output."""
    cca = ChunkedCrossAttention(d, d, 1, d, m, rngs=nnx.Rngs(0))
    cca.attn.wq.kernel[...] = jnp.zeros((d, 1, d))
    cca.attn.wv.kernel[...] = jnp.eye(d).reshape(d, 1, d)
    cca.attn.wo.kernel[...] = jnp.eye(d).reshape(1, d, d)
    return cca


def test_golden_hand_computed():
    """M=2, L=6 (C=3 chunks), K=2 neighbours of R=2 tokens; each neighbour token is a one-hot in D=12,
    so the output row of a query is exactly its attention weights over the 12 neighbour tokens."""
    m, c, k, r = 2, 3, 2, 2
    d = c * k * r
    cca = _identity_cca(m, d)
    enc = jnp.eye(d).reshape(1, c, k, r, d)  # neighbour token (u, k, r) = one-hot index u*4 + k*2 + r
    mask = np.ones((1, c, k, r), bool)
    mask[0, 1, 1, 1] = False  # padding: token (u=1, k=1, r=1) = index 7
    h = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, d)), jnp.float32)
    out = np.asarray(cca(h, enc, jnp.asarray(mask)))[0]
    q = 1 / 4
    t = 1 / 3
    expected = np.zeros((6, d))
    # position 0 (first M-1 tokens): passes through, CCA adds 0
    expected[1, 0:4] = q  # position 1 = last token of chunk 0 -> neighbours of chunk 0 (indices 0..3)
    expected[2, 0:4] = q  # position 2 = first token of chunk 1 -> still neighbours of chunk 0
    expected[3, 4:7] = t  # positions 3, 4 -> neighbours of chunk 1, padding (index 7) excluded
    expected[4, 4:7] = t
    expected[5, 8:12] = q  # position 5 = last token of chunk 2 -> neighbours of chunk 2
    np.testing.assert_allclose(out, expected, atol=1e-6)
    attended = {i: sorted(np.flatnonzero(out[i] > 1e-6).tolist()) for i in range(6)}
    assert attended == {
        0: [],
        1: [0, 1, 2, 3],
        2: [0, 1, 2, 3],
        3: [4, 5, 6],
        4: [4, 5, 6],
        5: [8, 9, 10, 11],
    }


def test_all_padding_neighbours_give_zero():
    cca = ChunkedCrossAttention(8, 6, 2, 4, 2, out_init="normal", rngs=nnx.Rngs(1))
    h = jnp.ones((1, 4, 8))
    enc = jnp.ones((1, 2, 3, 5, 6))
    out = cca(h, enc, jnp.zeros((1, 2, 3, 5), bool))
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    assert np.abs(np.asarray(cca(h, enc, jnp.ones((1, 2, 3, 5), bool)))[0, 1:]).max() > 1e-3  # real ones: not


def _listing1_reference(cca, h, enc, m):
    """Listing 1 written with explicit loops in numpy: one softmax over all K*R keys per query."""
    wq = np.asarray(cca.attn.wq.kernel[...])
    wk = np.asarray(cca.attn.wk.kernel[...])
    wv = np.asarray(cca.attn.wv.kernel[...])
    wo = np.asarray(cca.attn.wo.kernel[...])
    n, _ = h.shape
    c, kk, r, _ = enc.shape
    heads, dh = wq.shape[1:]
    out = np.zeros_like(h)
    for i in range(m - 1, n):
        u, o = divmod(i - (m - 1), m)
        q = np.einsum("d,dhk->hk", h[i], wq)
        q = np.asarray(rope(jnp.asarray(q)[None], jnp.asarray([m - 1 + o])))[0]
        acc = np.zeros((heads, dh))
        for hh in range(heads):
            logits, values = [], []
            for j in range(kk):
                keys = np.einsum("rd,dhk->rhk", enc[u, j], wk)
                keys = np.asarray(rope(jnp.asarray(keys), jnp.arange(r)))
                logits.extend((keys[:, hh] @ q[hh]) / np.sqrt(dh))
                values.extend(np.einsum("rd,dk->rk", enc[u, j], wv[:, hh]))
            w = np.exp(np.array(logits) - max(logits))
            acc[hh] = (w / w.sum()) @ np.array(values)
        out[i] = np.einsum("hk,hkd->d", acc, wo)
    return out


def test_matches_listing1_reference_with_random_weights():
    m, c, kk, r, d, de = 3, 3, 2, 5, 8, 6
    cca = ChunkedCrossAttention(d, de, 2, 4, m, out_init="normal", rngs=nnx.Rngs(3))
    assert np.abs(np.asarray(cca.attn.wo.kernel[...])).max() > 0.1  # a random output projection
    rng = np.random.default_rng(1)
    h = rng.normal(size=(8, d)).astype(np.float32)  # L=8 < C*M=9: last attending chunk partly empty
    enc = rng.normal(size=(c, kk, r, de)).astype(np.float32)
    got = np.asarray(cca(jnp.asarray(h)[None], jnp.asarray(enc)[None], jnp.ones((1, c, kk, r), bool)))[0]
    np.testing.assert_allclose(got, _listing1_reference(cca, h, enc, m), rtol=2e-4, atol=2e-5)


def test_relative_positions_shift_invariant():
    # RoPE: rotating queries and keys by the same extra offset leaves the scores unchanged
    rng = np.random.default_rng(2)
    q = jnp.asarray(rng.normal(size=(1, 2, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 2, 8)), jnp.float32)
    s1 = jnp.sum(rope(q, jnp.array([5])) * rope(k, jnp.array([2])))
    s2 = jnp.sum(rope(q, jnp.array([105])) * rope(k, jnp.array([102])))
    np.testing.assert_allclose(float(s1), float(s2), rtol=1e-4)
