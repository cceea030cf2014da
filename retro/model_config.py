"""The RETRO model's frozen config and its presets (`tiny`, `small`, `paper-172m`).

Legend for shapes everywhere in retro/: B batch, L length, C chunks, M chunk length, K neighbours,
R retrieved length (M + continuation), D model dim, H heads, V vocab.

Where chunked cross-attention (CCA) sits (`cca_layer_positions`), 1-indexed like the paper:
- more than 15 decoder layers: every 3rd layer from 9 (9, 12, 15, ...), as in the paper;
- 12 to 15 layers: every 3rd layer from 6 (6, 9, 12), as in the paper's 172M model;
- fewer than 12 layers (our small presets; a deviation, the paper has no such model): every 3rd
  layer from the middle layer, so half the stack reads text before the first CCA (6 layers -> 3, 6).
  `tiny` pins (2, 4) so tests exercise two CCA layers.

Deviations from the paper kept as options, each with the paper's choice one override away (defaults
are today's behaviour, so shipped configs, checkpoints and BENCHMARKS.md figures are unchanged):
- `enc_cross_layers`: which encoder layers cross-attend to the retrieving chunk's activations. Default
  None = every encoder layer; the paper conditions once, in the first layer (Table 10, P_enc = [1]):
  `enc_cross_layers=[1]`.
- `shared_embeddings`: the encoder reads the decoder's token embedding (projected to the encoder
  width). Default True; the paper's encoder has its own embedding (App. B.1.4): `shared_embeddings=false`.
- `cca_out_init`: "zero" (a fresh RETRO computes its decoder without CCA, retro/cca.py); the paper's
  is "normal".
Run folders written before these fields existed load with the defaults (old model.yaml lacks them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from util.configs import config_from_dict


def cca_layer_positions(n_layers: int) -> tuple[int, ...]:
    """1-indexed decoder layers that carry a CCA sublayer, following the paper's rule (see module doc)."""
    if n_layers > 15:
        start = 9
    elif n_layers >= 12:
        start = 6
    else:
        start = max(1, n_layers // 2)
    return tuple(range(start, n_layers + 1, 3))


@dataclass(frozen=True)
class ModelConfig:
    """Every size and choice of the RETRO model; presets in PRESETS, overrides via `model_config`."""

    vocab_size: int = 8192  # V: tokenizer vocabulary size (the index's tokenizer)
    d_model: int = 256  # D: decoder width
    n_layers: int = 6  # decoder layers
    n_heads: int = 4  # H: attention heads in decoder self-attention and CCA
    head_dim: int = 64  # per-head width of queries/keys/values
    d_ff: int = 1024  # hidden width of the GELU feed-forward blocks
    enc_dim: int = 256  # encoder width (the paper's encoder is narrower than big decoders)
    enc_layers: int = 2  # bidirectional neighbour-encoder layers (2 in the paper)
    enc_heads: int = 4  # encoder heads
    chunk_len: int = 64  # M: retrieval chunk length (64 in the paper)
    retrieved_len: int = 128  # R: neighbour length = chunk + continuation (128 in the paper)
    cca_layers: tuple[int, ...] | None = None  # 1-indexed CCA layers; None = cca_layer_positions(n_layers)
    rope_base: float = 10000.0  # RoPE frequency base (relative positions, see retro/layers.py)
    pad_id: int = 0  # token id of padding: masked as a key in the encoder and CCA
    tie_embeddings: bool = False  # share the readout matrix with the token embedding
    init_std: float = 0.02  # normal init scale of embeddings
    # init of the CCA output projection: "zero" = a fresh RETRO computes exactly its decoder without CCA
    # (a deviation, see retro/cca.py), "normal" = the paper's attention init
    cca_out_init: str = "zero"
    # 1-indexed encoder layers with cross-attention to the retrieving chunk's activations (query
    # conditioning); None = every layer (a deviation, kept as the default), (1,) = the paper's P_enc
    enc_cross_layers: tuple[int, ...] | None = None
    # the encoder embeds neighbour tokens with the decoder's embedding (a deviation, the default);
    # False = its own embedding at the encoder width, disjoint from the decoder's, as in the paper
    shared_embeddings: bool = True

    def cca_set(self) -> tuple[int, ...]:
        """The CCA layer positions (1-indexed), resolved from `cca_layers` or the paper's rule."""
        layers = cca_layer_positions(self.n_layers) if self.cca_layers is None else tuple(self.cca_layers)
        bad = [p for p in layers if not 1 <= p <= self.n_layers]
        if bad:
            raise ValueError(f"cca_layers {bad} outside 1..{self.n_layers}")
        return tuple(sorted(set(layers)))

    def enc_cross_set(self) -> tuple[int, ...]:
        """The encoder layers (1-indexed) that cross-attend to the chunk: `enc_cross_layers` or all."""
        layers = (
            tuple(range(1, self.enc_layers + 1))
            if self.enc_cross_layers is None
            else tuple(self.enc_cross_layers)
        )
        bad = [p for p in layers if not 1 <= p <= self.enc_layers]
        if bad:
            raise ValueError(f"enc_cross_layers {bad} outside 1..{self.enc_layers}")
        return tuple(sorted(set(layers)))

    def validate(self) -> ModelConfig:
        """Check cross-field constraints; returns self so it chains."""
        if self.retrieved_len < self.chunk_len:
            raise ValueError(f"retrieved_len {self.retrieved_len} < chunk_len {self.chunk_len}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.cca_out_init not in ("zero", "normal"):
            raise ValueError(f"cca_out_init {self.cca_out_init!r} must be 'zero' or 'normal'")
        self.cca_set()
        self.enc_cross_set()
        return self


PRESETS: dict[str, ModelConfig] = {
    # For tests: every shape distinct so a transposed axis fails loudly.
    "tiny": ModelConfig(
        vocab_size=61,
        d_model=32,
        n_layers=4,
        n_heads=2,
        head_dim=8,
        d_ff=64,
        enc_dim=24,
        enc_layers=2,
        enc_heads=2,
        chunk_len=4,
        retrieved_len=8,
        cca_layers=(2, 4),
    ),
    # For this 2-core machine: ~4.7M non-embedding decoder parameters; the encoder sees K*R = 4x the
    # decoder's tokens, and a 256-wide one trained 1/3 fewer tokens/s at the same MFU (BENCHMARKS.md);
    # wider decoders (d 384-512 x 4 layers) reach higher MFU but fewer tokens/s.
    "small": ModelConfig(enc_dim=128, enc_heads=2),
    # The paper's 172M model (Table 9 of Borgeaud et al.): 12 layers, d 896, 16 heads, 128k vocab.
    "paper-172m": ModelConfig(
        vocab_size=128000,
        d_model=896,
        n_layers=12,
        n_heads=16,
        head_dim=64,
        d_ff=3584,
        enc_dim=896,
        enc_layers=2,
        enc_heads=16,
        chunk_len=64,
        retrieved_len=128,
    ),
}


def model_config(preset: str = "small", overrides: dict[str, Any] | None = None) -> ModelConfig:
    """A preset with `overrides` applied (unknown keys and bad types raise a one-line error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r} (known: {', '.join(PRESETS)})")
    values = dataclasses.asdict(PRESETS[preset])
    values.update(overrides or {})
    return config_from_dict(ModelConfig, values, source=f"model preset {preset}").validate()
