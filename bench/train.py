"""Training throughput of the RETRO model on this machine: tokens/s and MFU against a measured peak.

    python bench/train.py [--preset small] [--batch-size 16] [--seq-len 256] [--k 2] [--steps 5]
                          [--rounds 3] [--no-retrieval] [--set KEY=VALUE ...] [--json FILE]

The CPU is shared, so the peak and the step are measured *interleaved* in one process: each of
`--rounds` rounds times the peak matmul (a jitted f32 2048x2048 matmul, best of 3), then `--steps`
training steps; one more peak closes the run. Reported:
- step s: best (min) and median over all timed steps;
- peak: best (max) over all peak measurements, and their range;
- MFU = FLOPs per step / best step / best peak (both best-of, so load on either side cancels as far
  as it can), and the median of the per-round MFUs (round median step vs. that round's peak).
FLOPs per step: XLA's cost analysis of the compiled step (which also counts elementwise work and the
optimizer update) and, side by side, an analytic count of the matmul FLOPs only (`analytic_flops`:
every dot the model runs, forward x3 for forward + backward). Random tokens and neighbours:
throughput does not depend on the data. The model sees L-1 tokens (targets are shifted by one).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.model import Retro, count_params
from retro.model_config import ModelConfig, model_config
from retro.train import TrainConfig, compiled_flops, make_optimizer, make_train_step


def analytic_flops(cfg: ModelConfig, b: int, length: int, k: int) -> dict[str, float]:
    """Matmul FLOPs of one training step (forward + backward = 3x forward), per component.

    length: tokens the model sees (L); k: neighbours per chunk (0 = RETRO[OFF]). Attention scores and
    values count the full [L, S] products the code computes (masked entries included).
    """
    t = b * length
    d, hd, f, v = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.d_ff, cfg.vocab_size
    n_layers = cfg.n_layers
    fwd = {
        "decoder proj": 2 * t * (4 * d * hd + 2 * d * f) * n_layers,
        "decoder attn": 2 * 2 * b * length * length * hd * n_layers,
        "readout": 2 * t * d * v,
        "cca": 0.0,
        "encoder": 0.0,
    }
    n_cca = len(cfg.cca_set())
    if k and n_cca:
        m, r, de = cfg.chunk_len, cfg.retrieved_len, cfg.enc_dim
        c = length // m  # chunks some position reads (the model drops the rest, retro/model.py)
        nq, ne = b * c * m, b * c * k * r
        fwd["cca"] = n_cca * (2 * nq * d * hd * 2 + 2 * ne * de * hd * 2 + 2 * 2 * nq * k * r * hd)
        enc = 2 * ne * d * de if de != d else 0
        per_layer = (
            2 * ne * de * de * 4  # self-attention q, k, v, o
            + 2 * 2 * ne * r * de  # self-attention scores and values
            + 2 * ne * de * de * 2  # cross-attention q, o
            + 2 * nq * d * de * 2  # cross-attention k, v of the chunk activations (once per chunk)
            + 2 * 2 * ne * m * de  # cross-attention scores and values
            + 2 * ne * de * 4 * de * 2  # feed-forward
        )
        fwd["encoder"] = enc + cfg.enc_layers * per_layer
    return {name: 3.0 * x for name, x in fwd.items()}


def peak_matmul(a: jax.Array, f, reps: int = 3) -> tuple[float, float]:
    """FLOP/s of f(a) = a @ a (f jitted and warm), best of `reps`, in wall time and per CPU second."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
        t, tc = time.perf_counter(), time.process_time()
        f(a).block_until_ready()
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - tc)
    return 2 * a.shape[0] ** 3 / best, 2 * a.shape[0] ** 3 / best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (peak, steps)")
    ap.add_argument("--no-retrieval", action="store_true", help="RETRO[OFF] step (no encoder/CCA work)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()
    from util.configs import parse_overrides

    load0 = os.getloadavg()
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
    c = -(-length // cfg.chunk_len)
    tokens = jnp.asarray(rng.integers(1, cfg.vocab_size, (b, length)), jnp.int32)
    nb = jnp.asarray(rng.integers(1, cfg.vocab_size, (b, c, k, cfg.retrieved_len)), jnp.int32)
    t = time.perf_counter()
    compiled = step.lower(trainable, opt_state, frozen, tokens, nb).compile()
    compile_s = time.perf_counter() - t
    flops = compiled_flops(compiled)
    ana = analytic_flops(cfg, b, length - 1, k)
    ana_total = sum(ana.values())

    a = jnp.asarray(rng.normal(size=(2048, 2048)), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    trainable, opt_state, loss, _ = compiled(trainable, opt_state, frozen, tokens, nb)  # warm-up
    jax.block_until_ready(loss)
    peaks, peaks_cpu, times, cpu_times, round_mfu = [], [], [], [], []
    for _ in range(args.rounds):
        p, pc = peak_matmul(a, mm)
        peaks.append(p)
        peaks_cpu.append(pc)
        rt = []
        for _ in range(args.steps):
            t, tc = time.perf_counter(), time.process_time()
            trainable, opt_state, loss, _ = compiled(trainable, opt_state, frozen, tokens, nb)
            jax.block_until_ready(loss)
            rt.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - tc)
        times += rt
        round_mfu.append(flops / float(np.median(rt)) / peaks[-1])
    p, pc = peak_matmul(a, mm)
    peaks.append(p)
    peaks_cpu.append(pc)
    load1 = os.getloadavg()

    best, med, peak = min(times), float(np.median(times)), max(peaks)
    n_params = count_params(model)
    tok = b * (length - 1)
    res = {
        "preset": args.preset,
        "overrides": args.set,
        "b": b,
        "seq_len": length,
        "k": k,
        "params": n_params,
        "step_s_best": best,
        "step_s_median": med,
        "step_cpu_s_best": min(cpu_times),
        "tokens_per_s": tok / best,
        "xla_gflop_step": flops / 1e9,
        "analytic_gflop_step": ana_total / 1e9,
        "analytic_gflop": {name: x / 1e9 for name, x in ana.items()},
        "achieved_gflops": flops / best / 1e9,
        "peak_gflops": peak / 1e9,
        "peak_gflops_all": [p / 1e9 for p in peaks],
        "mfu": flops / best / peak,
        "mfu_analytic": ana_total / best / peak,
        "mfu_round_median": float(np.median(round_mfu)),
        # load-robust diagnostic: FLOPs per CPU-second of the step vs. of the peak matmul
        "mfu_cpu_time": flops / min(cpu_times) / max(peaks_cpu),
        "load": [load0[0], load1[0]],
        "compile_s": compile_s,
        "loss": float(loss),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    print(
        "| preset | B x L | K | params | step s best / median | tokens/s | GFLOP/step XLA / analytic "
        "| achieved GFLOP/s | peak GFLOP/s best (range) | MFU XLA / analytic | MFU per-round median | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.preset} {' '.join(args.set)} | {b} x {length} | {k} | {n_params / 1e6:.2f}M "
        f"| {best:.3f} / {med:.3f} | {tok / best:,.0f} | {flops / 1e9:.1f} / {ana_total / 1e9:.1f} "
        f"| {flops / best / 1e9:.1f} | {peak / 1e9:.0f} ({min(peaks) / 1e9:.0f}-{peak / 1e9:.0f}) "
        f"| {res['mfu']:.1%} / {res['mfu_analytic']:.1%} | {res['mfu_round_median']:.1%} "
        f"| {load0[0]:.1f} -> {load1[0]:.1f} |"
    )
    parts = ", ".join(f"{name} {x / 1e9:.1f}" for name, x in ana.items())
    print(
        f"(analytic matmul GFLOP/step: {parts}; CPU time per step {min(cpu_times):.2f} s (all threads); "
        f"compile {compile_s:.1f} s; loss {float(loss):.3f})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
