"""The RETRO model: a decoder-only transformer with chunked cross-attention to encoded neighbours.

Algorithm 1 of the paper, per decoder layer l (pre-norm residuals, RMSNorm):
    x = x + ATTN(x)                                  causal self-attention, RoPE
    if l == min(P): E = ENCODER(RET(chunks), x)       neighbours encoded once, conditioned on x
    if l in P:      x = x + CCA(x, E)                 retro/cca.py
    x = x + FFW(x)
P is `ModelConfig.cca_set()` (retro/model_config.py). The encoder's deviations from the paper
(cross-attention in every encoder layer, the decoder's embedding shared) are options there
(`enc_cross_layers`, `shared_embeddings`) with the paper's choices available. With `neighbours=None` the encoder and CCA are
skipped: RETRO[OFF], identical to the same weights without CCA sublayers.
The encoder and CCA parameters are drawn after all decoder parameters, so the decoder starts from the
same weights as a model without CCA from the same seed; with the default zero-initialised CCA output
(retro/cca.py) a fresh RETRO computes exactly that model's function.

Two entry points share the weights:
- `__call__(tokens, neighbours)`: the full forward for training and evaluation;
- `decode(tokens, start, cache, neighbours)`: incremental decoding with a KV cache, one attending
  chunk at a time (retro/sampling.py drives it); neighbours are encoded once per chunk and their CCA
  keys/values are cached.

Shapes: B batch, L length, C chunks, M chunk length, K neighbours, R retrieved length, D model dim,
H heads, V vocab, S cache length.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.cca import ChunkedCrossAttention
from retro.encoder import NeighbourEncoder
from retro.layers import Attention, FeedForward, causal_mask, dense
from retro.model_config import ModelConfig


class DecoderBlock(nnx.Module):
    """Self-attention, optional CCA, feed-forward; each a pre-RMSNorm residual sublayer.

    The CCA sublayer (`norm_cca`, `cca`) is attached by `Retro` after every decoder parameter has been
    drawn (`add_cca`), so the decoder's initial weights do not depend on where CCA sits.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        """The decoder sublayers; CCA is None until `add_cca`."""
        d = cfg.d_model
        self.norm_attn = nnx.RMSNorm(d, rngs=rngs)
        self.attn = Attention(d, d, d, cfg.n_heads, cfg.head_dim, rope_base=cfg.rope_base, rngs=rngs)
        self.norm_cca: nnx.RMSNorm | None = nnx.data(None)
        self.cca: ChunkedCrossAttention | None = nnx.data(None)
        self.norm_ff = nnx.RMSNorm(d, rngs=rngs)
        self.ffw = FeedForward(d, cfg.d_ff, rngs=rngs)

    def add_cca(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        """Attach this layer's CCA sublayer (the layer is in the CCA set P)."""
        self.norm_cca = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.cca = ChunkedCrossAttention(
            cfg.d_model,
            cfg.enc_dim,
            cfg.n_heads,
            cfg.head_dim,
            cfg.chunk_len,
            rope_base=cfg.rope_base,
            out_init=cfg.cca_out_init,
            rngs=rngs,
        )


class Retro(nnx.Module):
    """RETRO decoder + neighbour encoder. `Retro(cfg, rngs=nnx.Rngs(0))`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        """Build every parameter from `cfg` (see retro/model_config.py)."""
        cfg = cfg.validate()
        self.cfg = cfg
        cca = cfg.cca_set()
        self.embed = nnx.Embed(
            cfg.vocab_size, cfg.d_model, embedding_init=nnx.initializers.normal(cfg.init_std), rngs=rngs
        )
        self.blocks = nnx.List([DecoderBlock(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.final_norm = nnx.RMSNorm(cfg.d_model, rngs=rngs)
        self.readout = (
            None if cfg.tie_embeddings else nnx.Linear(cfg.d_model, cfg.vocab_size, use_bias=False, rngs=rngs)
        )
        # the retrieval parameters are drawn last: the decoder's initial weights are those of a model
        # without CCA (cca_layers=[]) from the same seed, and with cca_out_init="zero" a fresh RETRO
        # computes exactly that model (retro/cca.py)
        for p in cca:
            self.blocks[p - 1].add_cca(cfg, rngs=rngs)
        self.encoder = (
            NeighbourEncoder(
                cfg.d_model,
                cfg.enc_dim,
                cfg.enc_layers,
                cfg.enc_heads,
                rope_base=cfg.rope_base,
                cross_layers=cfg.enc_cross_set(),
                vocab_size=None if cfg.shared_embeddings else cfg.vocab_size,
                init_std=cfg.init_std,
                rngs=rngs,
            )
            if cca
            else None
        )

    # ---------------------------------------------------------------- full forward
    def readout_kernel(self) -> jax.Array:
        """The readout matrix [D, V] (the embedding's transpose when tied)."""
        return self.embed.embedding[...].T if self.readout is None else self.readout.kernel[...]

    def logits(self, x: jax.Array) -> jax.Array:
        """Final norm and readout: [..., D] -> [..., V]."""
        return dense(self.final_norm(x), self.readout_kernel())

    def encode(self, neighbours: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        """neighbours: [B, C, K, R] token ids; h: residual stream [B, L, D] at the first CCA layer.
        Returns E [B, C, K, R, De] and its mask [B, C, K, R] (False on padding).

        The neighbours of chunk u are conditioned on H_u = h[:, u*M:(u+1)*M], the activations of the
        chunk that retrieved them (the paper's query conditioning; pinned by
        tests/test_model_forward.py::test_encoder_conditions_neighbours_on_their_own_chunk)."""
        b, length, d = h.shape
        c, m = neighbours.shape[1], self.cfg.chunk_len
        ctx = jnp.pad(h, ((0, 0), (0, max(0, c * m - length)), (0, 0)))[:, : c * m].reshape(b, c, m, d)
        mask = neighbours != self.cfg.pad_id
        return self.encoder(self.encoder.embed_neighbours(neighbours, self.embed), mask, ctx), mask

    def __call__(self, tokens: jax.Array, neighbours: jax.Array | None = None) -> jax.Array:
        """tokens: [B, L]; neighbours: [B, C, K, R] with C >= L // M, or None (RETRO[OFF]).

        neighbours[:, u] are those retrieved with chunk u = tokens[:, u*M:(u+1)*M]; they are read by
        positions u*M + M-1 ... u*M + 2M-2. Chunks u >= L // M are read by no position and are dropped
        before encoding (a training sequence of L = 255 tokens reads 3 of its 4 chunks' neighbours).
        Returns logits [B, L, V] (f32).
        """
        return self.logits(self.hidden(tokens, neighbours)).astype(jnp.float32)

    def hidden(self, tokens: jax.Array, neighbours: jax.Array | None = None) -> jax.Array:
        """The residual stream after the last block, before the final norm: [B, L, D] (see __call__)."""
        b, length = tokens.shape
        if neighbours is not None:
            neighbours = neighbours[:, : length // self.cfg.chunk_len]
        use = (
            neighbours is not None
            and neighbours.shape[1] > 0
            and neighbours.shape[2] > 0
            and self.encoder is not None
        )
        x = self.embed(tokens)
        pos = np.arange(length)  # static: RoPE tables and the mask are constants of the program
        mask = causal_mask(pos, pos)
        enc = enc_mask = None
        for blk in self.blocks:
            h = blk.norm_attn(x)
            x = x + blk.attn.self_attend(h, mask, pos)
            if blk.cca is not None and use:
                if enc is None:
                    enc, enc_mask = self.encode(neighbours, x)
                x = x + blk.cca(blk.norm_cca(x), enc, enc_mask)
            x = x + blk.ffw(blk.norm_ff(x))
        return x

    # ---------------------------------------------------------------- incremental decoding
    def init_cache(self, batch: int, max_len: int, k: int) -> dict:
        """An empty cache for `batch` sequences of up to `max_len` tokens and `k` neighbours per chunk.

        k, v: per layer [B, S, H, Dh]; h: [B, S, D] first-CCA-layer states (the encoder's context);
        cca_k, cca_v: per CCA layer [B, K*R, H, Dh]; cca_mask: [B, K*R], all False = nothing retrieved yet.
        """
        cfg = self.cfg
        dt = self.embed.embedding[...].dtype
        kv = (batch, max_len, cfg.n_heads, cfg.head_dim)
        n_cca = len(cfg.cca_set())
        ckv = (batch, max(k, 1) * cfg.retrieved_len, cfg.n_heads, cfg.head_dim)
        return {
            "k": [jnp.zeros(kv, dt) for _ in range(cfg.n_layers)],
            "v": [jnp.zeros(kv, dt) for _ in range(cfg.n_layers)],
            "h": jnp.zeros((batch, max_len, cfg.d_model), dt),
            "cca_k": [jnp.zeros(ckv, dt) for _ in range(n_cca)],
            "cca_v": [jnp.zeros(ckv, dt) for _ in range(n_cca)],
            "cca_mask": jnp.zeros(ckv[:2], bool),
        }

    def decode(
        self, tokens: jax.Array, start: jax.Array, cache: dict, neighbours: jax.Array | None = None
    ) -> tuple[jax.Array, dict]:
        """Run tokens [B, T] at positions start..start+T-1 against the cache -> (logits [B, T, V], cache).

        The T positions must lie in one attending chunk: either all < M-1, or within
        u*M + M-1 ... u*M + 2M-2 for one u. `neighbours` [B, K, R] (retrieved with chunk u) may be given
        only when start == u*M + M-1: they are encoded here, once, against the cached states of chunk u,
        and their CCA keys/values replace the cached ones.
        """
        cfg = self.cfg
        m = cfg.chunk_len
        b, t = tokens.shape
        s = cache["h"].shape[1]
        pos = start + jnp.arange(t)
        mask = causal_mask(pos, jnp.arange(s))
        cache = {key: (list(val) if isinstance(val, list) else val) for key, val in cache.items()}
        x = self.embed(tokens)
        i_cca = 0
        for i, blk in enumerate(self.blocks):
            h = blk.norm_attn(x)
            q, k, v = blk.attn.qkv(h, pos)
            cache["k"][i] = jax.lax.dynamic_update_slice(cache["k"][i], k, (0, start, 0, 0))
            cache["v"][i] = jax.lax.dynamic_update_slice(cache["v"][i], v, (0, start, 0, 0))
            x = x + blk.attn.attend(q, cache["k"][i], cache["v"][i], mask)
            if blk.cca is not None:
                if i_cca == 0:
                    cache["h"] = jax.lax.dynamic_update_slice(cache["h"], x, (0, start, 0))
                    if neighbours is not None:
                        ctx = jax.lax.dynamic_slice_in_dim(cache["h"], start - (m - 1), m, axis=1)
                        enc, enc_mask = self.encode(neighbours[:, None], ctx)  # [B, 1, K, R, De]
                if neighbours is not None:
                    ck, cv, cmask = blk.cca.keys_values(enc[:, 0], enc_mask[:, 0])
                    cache["cca_k"][i_cca], cache["cca_v"][i_cca], cache["cca_mask"] = ck, cv, cmask
                offset = (pos - (m - 1)) % m
                out = blk.cca.step(
                    blk.norm_cca(x), offset, cache["cca_k"][i_cca], cache["cca_v"][i_cca], cache["cca_mask"]
                )
                x = x + jnp.where((pos >= m - 1)[None, :, None], out, 0.0)
                i_cca += 1
            x = x + blk.ffw(blk.norm_ff(x))
        return self.logits(x).astype(jnp.float32), cache


def count_params(model: nnx.Module) -> int:
    """Number of parameters (all nnx.Param leaves)."""
    return sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
