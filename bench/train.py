"""Training throughput of the RETRO model on this machine: tokens/s and MFU against a measured peak.

    python bench/train.py [--preset small] [--batch-size 8] [--seq-len 512] [--k 2] [--steps 10]

Peak = a jitted f32 2048x2048 matmul timed here (retro.train.measure_peak_flops). FLOPs per step come
from XLA's cost analysis of the compiled step; the analytic 6*N*tokens (+ attention) figure is printed
next to it. Random tokens and neighbours: throughput does not depend on the data.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.model import Retro, count_params
from retro.model_config import model_config
from retro.train import TrainConfig, compiled_flops, make_optimizer, make_train_step, measure_peak_flops


def analytic_flops(cfg, params_matmul: int, b: int, length: int, k: int) -> float:
    """6 * matmul params * tokens, plus attention score/value FLOPs (x3 for backward)."""
    c = length // cfg.chunk_len
    dec = 6 * params_matmul * b * length
    attn = 3 * 2 * 2 * b * length * length / 2 * cfg.n_heads * cfg.head_dim * cfg.n_layers
    return dec + attn + 0 * c * k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-retrieval", action="store_true", help="RETRO[OFF] step (no encoder/CCA work)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    args = ap.parse_args()
    from retro.configs import parse_overrides

    cfg = model_config(args.preset, parse_overrides(args.set))
    model = Retro(cfg, rngs=nnx.Rngs(0))
    graphdef, tp, fp = nnx.split(model, nnx.Param, ...)
    trainable, frozen = nnx.to_pure_dict(tp), nnx.to_pure_dict(fp)
    tx = make_optimizer(TrainConfig(steps=1000))
    opt_state = tx.init(trainable)
    use_nb = not args.no_retrieval
    step = make_train_step(graphdef, tx, cfg.pad_id, use_nb)
    rng = np.random.default_rng(0)
    b, length, k = args.batch_size, args.seq_len, args.k if use_nb else 0
    c = length // cfg.chunk_len
    tokens = jnp.asarray(rng.integers(1, cfg.vocab_size, (b, length)), jnp.int32)
    nb = jnp.asarray(rng.integers(1, cfg.vocab_size, (b, c, k, cfg.retrieved_len)), jnp.int32)
    t = time.perf_counter()
    compiled = step.lower(trainable, opt_state, frozen, tokens, nb).compile()
    compile_s = time.perf_counter() - t
    flops = compiled_flops(compiled)
    peak = measure_peak_flops()
    trainable, opt_state, loss, _ = compiled(trainable, opt_state, frozen, tokens, nb)
    jax.block_until_ready(loss)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        trainable, opt_state, loss, _ = compiled(trainable, opt_state, frozen, tokens, nb)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t)
    dt = float(np.median(times))
    n_params = count_params(model)
    emb = cfg.vocab_size * cfg.d_model
    print(
        f"| preset | B x L | K | params | step s (median of {args.steps}) | tokens/s | XLA GFLOP/step "
        f"| peak GFLOP/s | MFU | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.preset} | {b} x {length} | {k} | {n_params:,} | {dt:.3f} | {b * (length - 1) / dt:.0f} "
        f"| {flops / 1e9:.1f} | {peak / 1e9:.1f} | {flops / dt / peak:.1%} | {compile_s:.1f} |"
    )
    print(
        f"(analytic decoder-only 6N·T + attention: {analytic_flops(cfg, n_params - emb, b, length, k) / 1e9:.1f} "
        f"GFLOP/step; loss {float(loss):.3f})"
    )


if __name__ == "__main__":
    main()
