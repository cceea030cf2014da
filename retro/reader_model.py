"""The reader's network: the RETRO model (retro/model.py, unchanged) plus a pointer (copy) head.

Sequence layout (the paper's Listing 1 alignment; M = reader chunk length, 32 by default):

    [pad ... pad <s> question tokens <sep>] [answer tokens <next> answer tokens </s> pad ...]
     \\______ question chunks 0..u ______/  \\____ answer chunks u+1, u+2, ... ____________/

The question is left-padded so that <sep> is the last token of chunk u. The evidence neighbours
(K texts re-tokenized with the reader's tokenizer, cut to R tokens) are chunk u's retrieval, so CCA
reads them from position u*M + M-1 (<sep>, which predicts the first answer token) through the first
M-1 tokens of chunk u+1. Answers longer than M-1 tokens run into chunk u+2: every chunk from u on is
given the same evidence neighbours, encoded again against that chunk's activations (query
conditioning on the partial answer); question chunks before u get none (all padding, which CCA turns
into exactly zero). A multi-part answer (multivalue, multiquery) separates its parts with <next>;
abstention is the single token <abstain>.

Deviation from the paper (measured reason): a pointer-generator copy head. The output distribution at
an answer position t is

    p(y) = (1 - g_t) softmax(readout(h_t))[y] + g_t * sum_{j : n_j = y} a_tj

with h_t the final hidden state, g_t = sigmoid(w . h_t + b) a copy gate, and a_t a softmax over the
K*R encoded neighbour tokens n_j of the chunk that position t reads (the same encoder outputs E that
CCA attends to, so the copy is one more cross-attention over the neighbours): scores
q_t . (W_a E_j + W_b E_{j-1}) (E_{j-1}: the previous neighbour token, so "the token after the one I just
emitted" is a bilinear match). Without it, plain CCA learning to copy a 4-6 token value sat at the
no-copy loss for ~600 steps and had exact match 0 after 10 minutes (DESIGN.md, Facts); the reader has
to copy 7-36-token numbers and uuids from one of 10-20 neighbours within a 2-hour CPU budget.

Shapes: B batch, L length, C chunks, M chunk length, K neighbours, R retrieved length, D model dim,
De encoder dim, P pointer dim, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from retro.cca import attending_chunks, unchunk
from retro.layers import dense
from retro.model import Retro
from retro.model_config import ModelConfig

NEG = -1e9


class ReaderRetro(Retro):
    """`Retro` plus an exact-match input feature on neighbour tokens, recording (sowing) its encoded
    neighbours and final hidden states, which the copy head reads.

    Neighbour ids arrive as `token + V * level`, level >= 1 = the token occurs in the question (DrQA's
    exact-match feature), level >= n = it lies in a run of n question tokens; the encoder input is
    embed(token) + [level >= 1] m + sum_n [level >= n] m_n, learned vectors that start at zero (so a
    checkpoint without them computes the same function). `encode` repeats Retro.encode's
    three lines with that input; everything else is Retro's."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, match_levels: int = 1):
        """Retro's parameters, then the match vector m [D] (zero) and, with match_levels n > 1, one
        vector per run length 2..n (`match_runs` [n-1, D], zero: added to a checkpoint without them,
        the network computes the same function until trained)."""
        super().__init__(cfg, rngs=rngs)
        self.match = nnx.Param(jnp.zeros((cfg.d_model,)))
        self.match_levels = match_levels
        if match_levels > 1:
            self.match_runs = nnx.Param(jnp.zeros((match_levels - 1, cfg.d_model)))

    def encode(self, neighbours: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        """neighbours: [B, C, K, R] ids (+V * match level, reader_layout.mark_matches); h: [B, L, D] ->
        E [B, C, K, R, De], mask. Records E as the intermediate `reader_enc`."""
        v = self.cfg.vocab_size
        tok, level = neighbours % v, neighbours // v
        match = (level >= 1).astype(h.dtype)
        b, length, d = h.shape
        c, m = tok.shape[1], self.cfg.chunk_len
        ctx = jnp.pad(h, ((0, 0), (0, max(0, c * m - length)), (0, 0)))[:, : c * m].reshape(b, c, m, d)
        mask = tok != self.cfg.pad_id
        x = self.embed(tok) + match[..., None] * self.match[...]  # the shared embedding, matches marked
        for n in range(2, self.match_levels + 1):  # inside a run of n question tokens
            x = x + (level >= n).astype(h.dtype)[..., None] * self.match_runs[...][n - 2]
        enc = self.encoder(self.encoder.proj_in(x) if self.encoder.proj_in is not None else x, mask, ctx)
        self.sow(nnx.Intermediate, "reader_enc", enc)
        return enc, mask

    def logits(self, x: jax.Array) -> jax.Array:
        """Retro.logits, recording the normalised final states [..., D] as `reader_h`."""
        self.sow(nnx.Intermediate, "reader_h", self.final_norm(x))
        return super().logits(x)


class CopyHead(nnx.Module):
    """Pointer over encoded neighbour tokens and a copy gate (see the module doc)."""

    def __init__(self, d_model: int, enc_dim: int, dim: int, *, rngs: nnx.Rngs):
        """d_model: decoder width D; enc_dim: encoder width De; dim: pointer width P."""
        init = nnx.initializers.normal
        self.wq = nnx.Param(init(d_model**-0.5)(rngs.params(), (d_model, dim)))
        self.wa = nnx.Param(init(enc_dim**-0.5)(rngs.params(), (enc_dim, dim)))
        self.wb = nnx.Param(init(enc_dim**-0.5)(rngs.params(), (enc_dim, dim)))
        self.wg = nnx.Param(jnp.zeros((d_model,)))
        self.bg = nnx.Param(jnp.zeros(()))

    def keys(self, enc: jax.Array) -> jax.Array:
        """enc: [..., K, R, De] -> pointer keys [..., K*R, P] (token j and its predecessor j-1)."""
        prev = jnp.pad(enc, [(0, 0)] * (enc.ndim - 2) + [(1, 0), (0, 0)])[..., :-1, :]
        k = dense(enc, self.wa[...]) + dense(prev, self.wb[...])
        return k.reshape(*k.shape[:-3], -1, k.shape[-1])

    def scores(self, h: jax.Array, keys: jax.Array, mask: jax.Array) -> jax.Array:
        """h: [..., T, D]; keys: [..., S, P]; mask: [..., S] -> masked pointer scores [..., T, S]."""
        q = dense(h, self.wq[...]) * keys.shape[-1] ** -0.5
        s = jnp.einsum("...tp,...sp->...ts", q, keys)
        return jnp.where(mask[..., None, :], s, NEG)

    def gate(self, h: jax.Array) -> jax.Array:
        """h: [..., D] -> log g and log (1 - g), each [...]."""
        z = h @ self.wg[...] + self.bg[...]
        return jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)


class ReaderNet(nnx.Module):
    """RETRO + copy head. `ReaderNet(model_cfg, copy_dim, rngs=nnx.Rngs(0))`."""

    def __init__(self, cfg: ModelConfig, copy_dim: int, *, rngs: nnx.Rngs, match_levels: int = 1):
        """cfg: the RETRO model's config; copy_dim: pointer width P; match_levels: ReaderConfig's."""
        self.retro = ReaderRetro(cfg, rngs=rngs, match_levels=match_levels)
        self.copy = CopyHead(cfg.d_model, cfg.enc_dim, copy_dim, rngs=rngs)

    def answer_logprobs(self, tokens: jax.Array, neighbours: jax.Array, targets: jax.Array) -> jax.Array:
        """Training forward. tokens, targets: [B, L] (targets = tokens shifted left); neighbours:
        [B, C, K, R] with C = L // M. Returns log p(target) [B, L] under the copy mixture (positions
        before M-1 read no neighbours: vocabulary only)."""
        m = self.retro.cfg.chunk_len
        logits = self.retro(tokens, neighbours)  # [B, L, V]
        inter = nnx.pop(self.retro, nnx.Intermediate)
        h = inter["reader_h"][0]  # [B, L, D] normalised
        enc = inter["reader_enc"][0]  # [B, C, K, R, De]
        b, length = tokens.shape
        c = enc.shape[1]
        lpv = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
        nb = neighbours[:, :c].reshape(b, c, -1) % self.retro.cfg.vocab_size  # [B, C, K*R] token ids
        nmask = nb != self.retro.cfg.pad_id
        s = self.copy.scores(attending_chunks(h, m, c), self.copy.keys(enc), nmask)  # [B, C, M, K*R]
        tgt = attending_chunks(targets[..., None], m, c)[..., 0]  # [B, C, M]
        hit = (nb[:, :, None, :] == tgt[..., None]) & nmask[:, :, None, :]
        lpc = jax.nn.logsumexp(jnp.where(hit, s, NEG), -1) - jax.nn.logsumexp(s, -1)  # [B, C, M]
        any_nb = jnp.broadcast_to(nmask.any(-1)[:, :, None], lpc.shape)
        lpc = unchunk(lpc[..., None], length)[..., 0]
        has = unchunk(any_nb[..., None].astype(jnp.float32), length)[..., 0] > 0
        log_g, log_1g = self.copy.gate(h)
        mix = jnp.logaddexp(log_1g + lpv, log_g + jnp.maximum(lpc, NEG))
        return jnp.where(has, mix, lpv)
