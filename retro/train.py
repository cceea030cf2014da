"""Training: AdamW + warmup/cosine + clipping, orbax checkpoints with resume, loss / tokens/s / MFU.

`retro train --config FILE key=value ...` resolves a TrainConfig (model fields as `model.NAME=value`),
writes config.yaml and model.yaml into `out`, and trains on a neighbour store (retro/data.py).

- The hot step is jitted functionally: the model is split once into (graphdef, trainable, frozen) pure
  dicts and merged inside a plain `jax.jit`ed function, so no NNX graph traversal happens per step.
- RETROfit (`retrofit_from=RUN`): the decoder weights of a trained run are loaded (keys it lacks, the
  encoder and CCA, stay freshly initialised); only encoder + CCA parameters are trainable (an nnx
  filter on the paths), the decoder is passed to the step as a constant.
- The loss is the fused blocked readout + cross-entropy (`retro.layers.readout_xent`): the [B*L, V]
  logits are never materialised and their gradient is formed in the forward pass.
- MFU = FLOPs of one compiled step (XLA's cost analysis) / step time / peak, where the peak is measured
  once by timing a jitted f32 matmul on this machine (`measure_peak_flops`). The cost analysis counts a
  loop body once, so the step has no loops (the loss's blocks are unrolled); it agrees with an analytic
  matmul count to ~1% (bench/train.py prints both).

Shapes: B batch, L length, C chunks, K neighbours, R retrieved length, V vocab.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml
from flax import nnx

from retro import checkpoint as ckpt
from retro.data import NeighbourStore
from retro.layers import readout_xent
from retro.model import Retro, count_params
from retro.model_config import ModelConfig, model_config
from util.configs import config_to_dict, write_resolved_config
from util.runinfo import atomic_write_json, atomic_write_text, run_info


@dataclass(frozen=True)
class TrainConfig:
    """A training run: data, model preset + overrides, optimiser, schedule, logging and checkpoints."""

    data: str = ""  # neighbour store folder written by `retro neighbours` (retro/data.py)
    out: str = "runs/retro"  # run folder: configs, checkpoints, metrics.jsonl, results.json
    preset: str = "small"  # model preset: tiny | small | paper-172m
    model: dict = field(default_factory=dict)  # ModelConfig overrides (CLI: model.NAME=value)
    seq_len: int = 512  # L: tokens per training sequence (a multiple of the chunk length)
    batch_size: int = 8  # B: sequences per step
    k: int = 2  # K: neighbours per chunk at training (2 in the paper)
    retrieval: bool = (
        True  # False: train without neighbours (RETRO[OFF]; a baseline with model.cca_layers=[])
    )
    steps: int = 1000  # optimiser steps in total (a resumed run continues to this)
    lr: float = 1e-3  # peak learning rate
    warmup_steps: int = 100  # linear warmup from 0
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at `steps`
    weight_decay: float = 0.1  # AdamW decay on matrices (not on norms)
    b1: float = 0.9  # Adam beta1
    b2: float = 0.95  # Adam beta2
    clip_norm: float = 1.0  # global gradient-norm clipping
    seed: int = 0  # parameter init and data order
    log_every: int = 10  # steps between log lines (metrics.jsonl)
    ckpt_every: int = 200  # steps between checkpoints (and one at the end)
    keep: int = 2  # checkpoints kept
    retrofit_from: str = ""  # run folder of a trained decoder: freeze it, train only encoder + CCA
    time_budget_s: float = 0.0  # stop (and checkpoint) after this many seconds; 0 = no limit
    # learning-rate multiplier for the encoder and CCA parameters (paths containing encoder / cca /
    # norm_cca): their AdamW updates are scaled by it, the decoder's are not; 1.0 = one shared rate
    retrieval_lr_mult: float = 1.0

    def __post_init__(self):
        if not (self.retrieval_lr_mult > 0 and np.isfinite(self.retrieval_lr_mult)):
            raise ValueError(
                f"TrainConfig.retrieval_lr_mult must be a finite number > 0, got {self.retrieval_lr_mult!r}"
            )


RETRIEVAL_KEYS = ("encoder", "cca", "norm_cca")  # path elements that mark encoder / CCA parameters
RETROFIT_TRAINABLE = nnx.All(nnx.Param, nnx.Any(*(nnx.PathContains(k) for k in RETRIEVAL_KEYS)))


def is_retrieval_path(path: tuple) -> bool:
    """Whether a pytree key path (of the pure parameter dict) belongs to the encoder or a CCA layer."""
    return any(getattr(k, "key", None) in RETRIEVAL_KEYS for k in path)


def scale_retrieval_updates(mult: float) -> optax.GradientTransformation:
    """Stateless: multiply the updates of encoder / CCA parameters by `mult` (after AdamW, so their
    effective learning rate, weight decay included, is lr * mult); other updates pass unchanged."""

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(
            lambda path, u: u * mult if is_retrieval_path(path) else u, updates
        ), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


_PEAK: dict[int, float] = {}


def measure_peak_flops(n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of a jitted f32 [n, n] @ [n, n] matmul on this machine: best of `reps` after warmup
    (measured once per process and size)."""
    if n in _PEAK:
        return _PEAK[n]
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    _PEAK[n] = 2 * n**3 / best
    return _PEAK[n]


def compiled_flops(compiled: Any) -> float:
    """FLOPs of a compiled XLA computation (cost analysis; 0.0 when the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """clip(global norm) -> AdamW with linear warmup and cosine decay; no decay on 1-D params (norms);
    then, when cfg.retrieval_lr_mult != 1, encoder / CCA updates scaled by it (with 1.0 the chain, and
    hence the optimiser state of older checkpoints, is unchanged)."""
    sched = optax.warmup_cosine_decay_schedule(
        0.0,
        cfg.lr,
        max(1, cfg.warmup_steps),
        max(cfg.steps, cfg.warmup_steps + 1),
        end_value=cfg.lr * cfg.min_lr_ratio,
    )
    parts = [
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(
            sched,
            b1=cfg.b1,
            b2=cfg.b2,
            weight_decay=cfg.weight_decay,
            mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
        ),
    ]
    if cfg.retrieval_lr_mult != 1.0:
        parts.append(scale_retrieval_updates(cfg.retrieval_lr_mult))
    return optax.chain(*parts)


def deep_merge(a: dict, b: dict) -> dict:
    """Union of two nested pure dicts (disjoint leaves), e.g. trainable and frozen params."""
    out = dict(a)
    for key, val in b.items():
        out[key] = deep_merge(out[key], val) if key in out and isinstance(val, dict) else val
    return out


def make_train_step(graphdef: Any, tx: optax.GradientTransformation, pad_id: int, use_neighbours: bool):
    """A jitted step (trainable, opt_state, frozen, tokens [B, L], neighbours [B, C, K, R]) ->
    (trainable, opt_state, loss nats/token, grad norm). Inputs tokens[:, :-1], targets tokens[:, 1:]."""

    def loss_fn(trainable, frozen, tokens, neighbours):
        model = nnx.merge(graphdef, trainable, frozen)
        h = model.final_norm(model.hidden(tokens[:, :-1], neighbours if use_neighbours else None))
        targets = tokens[:, 1:].reshape(-1)
        mask = targets != pad_id
        weights = mask / jnp.maximum(jnp.sum(mask), 1)
        # mean NLL over non-pad targets, without materialising the [B*L, V] logits (retro/layers.py)
        return readout_xent(h.reshape(-1, h.shape[-1]), model.readout_kernel(), targets, weights)

    def step(trainable, opt_state, frozen, tokens, neighbours):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, frozen, tokens, neighbours)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss, optax.tree.norm(grads)

    return jax.jit(step, donate_argnums=(0, 1))


def resolve_model_config(cfg: TrainConfig, store: NeighbourStore | None) -> ModelConfig:
    """The preset with the store's vocab/pad/chunk length (unless overridden) and cfg.model applied."""
    auto: dict[str, Any] = {}
    if store is not None:
        auto = {
            "vocab_size": int(store.meta.get("vocab_size", 0)) or None,
            "pad_id": store.pad_id,
            "chunk_len": store.chunk_len,
            "retrieved_len": 2 * store.chunk_len,
        }
        auto = {k: v for k, v in auto.items() if v is not None}
    return model_config(cfg.preset, {**auto, **cfg.model})


def train(cfg: TrainConfig, quiet: bool = False) -> dict:
    """Train (or resume) a run as configured; returns the summary also written to out/results.json."""
    from tqdm import tqdm

    if not cfg.data:
        raise ValueError("train: data=PATH (a neighbour store from `retro neighbours`) is required")
    store = NeighbourStore(cfg.data)
    mcfg = resolve_model_config(cfg, store)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved_config(cfg, out)
    atomic_write_text(out / "model.yaml", yaml.safe_dump(config_to_dict(mcfg), sort_keys=False))

    model = Retro(mcfg, rngs=nnx.Rngs(cfg.seed))
    trainable_filter: Any = nnx.Param
    if cfg.retrofit_from:
        _, base = ckpt.restore_params(cfg.retrofit_from)
        fresh = ckpt.merge_params(model, base, strict=False)
        if not fresh:
            raise ValueError(f"retrofit_from {cfg.retrofit_from}: checkpoint already has encoder/CCA weights")
        trainable_filter = RETROFIT_TRAINABLE
    tx = make_optimizer(cfg)
    mngr = ckpt.manager(out, cfg.keep)
    start = 0
    if mngr.latest_step() is not None:  # resume
        full = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        _, tp, _ = nnx.split(model, trainable_filter, ...)
        start, full, opt_state = ckpt.restore(mngr, full, tx.init(nnx.to_pure_dict(tp)))
        ckpt.merge_params(model, full, strict=True)
    if start >= cfg.steps:
        prev = out / "results.json"
        if not quiet:
            print(f"{out}: already trained to step {start} (steps={cfg.steps}); nothing to do")
        return json.loads(prev.read_text()) if prev.is_file() else {"step": start, "start_step": start}
    graphdef, tp, fp = nnx.split(model, trainable_filter, ...)
    trainable, frozen = nnx.to_pure_dict(tp), nnx.to_pure_dict(fp)
    if start == 0:
        opt_state = tx.init(trainable)
    n_train = sum(x.size for x in jax.tree.leaves(trainable))
    step_fn = make_train_step(graphdef, tx, mcfg.pad_id, cfg.retrieval)
    k = cfg.k if cfg.retrieval else 0
    batches = store.batches("train", cfg.batch_size, cfg.seq_len, k, mcfg.retrieved_len, cfg.seed, start)

    tokens0, nb0 = next(batches)
    compiled = step_fn.lower(trainable, opt_state, frozen, tokens0, nb0).compile()
    flops_step = compiled_flops(compiled)
    peak = measure_peak_flops()
    tok_per_step = cfg.batch_size * (cfg.seq_len - 1)
    metrics_f = open(out / "metrics.jsonl", "a")
    bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", disable=quiet)
    t_begin = time.perf_counter()
    t_win, steps_win, tokens_b, nb_b = time.perf_counter(), 0, tokens0, nb0
    step, loss = start, float("nan")
    timed_steps, timed_s = 0, 0.0
    last: dict[str, Any] = {}
    while step < cfg.steps:
        trainable, opt_state, loss_a, gnorm = compiled(trainable, opt_state, frozen, tokens_b, nb_b)
        step += 1
        steps_win += 1
        tokens_b, nb_b = next(batches)  # overlaps with the asynchronous step
        end = step == cfg.steps or (cfg.time_budget_s and time.perf_counter() - t_begin > cfg.time_budget_s)
        if step % cfg.log_every == 0 or end:
            loss = float(loss_a)
            dt = time.perf_counter() - t_win
            if step - start > steps_win:  # exclude the first window (warm-up) from the averages
                timed_steps, timed_s = timed_steps + steps_win, timed_s + dt
            sps = steps_win / dt
            last = {
                "step": step,
                "loss": loss,
                "grad_norm": float(gnorm),
                "tokens_per_s": sps * tok_per_step,
                "mfu": sps * flops_step / peak,
                "wall_s": time.perf_counter() - t_begin,
            }
            metrics_f.write(json.dumps(last) + "\n")
            metrics_f.flush()
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{last['tokens_per_s']:.0f}", mfu=f"{last['mfu']:.1%}")
            if quiet:
                print(
                    f"step {step} loss {loss:.4f} tok/s {last['tokens_per_s']:.0f} mfu {last['mfu']:.1%}",
                    flush=True,
                )
            t_win, steps_win = time.perf_counter(), 0
        bar.update(1)
        if step % cfg.ckpt_every == 0 or end:
            ckpt.save(mngr, step, deep_merge(trainable, frozen), opt_state)
        if end:
            break
    bar.close()
    metrics_f.close()
    sps = timed_steps / timed_s if timed_s else last.get("tokens_per_s", 0.0) / tok_per_step
    summary = {
        "config": config_to_dict(cfg),
        "model": config_to_dict(mcfg),
        "run": run_info(),
        "params": count_params(model),
        "trainable_params": n_train,
        "start_step": start,
        "step": step,
        "final_loss": loss,
        "tokens_per_s": sps * tok_per_step,
        "mfu": sps * flops_step / peak,
        "flops_per_step": flops_step,
        "peak_flops": peak,
        "wall_s": time.perf_counter() - t_begin,
    }
    atomic_write_json(out / "results.json", summary)
    return summary


def config_with_model_overrides(path: str | None, overrides: list[str]) -> TrainConfig:
    """resolve_config for TrainConfig, with `model.NAME=value` overrides gathered into the model dict."""
    from util.configs import parse_overrides, resolve_config

    plain = [o for o in overrides if not o.startswith("model.")]
    cfg = resolve_config(TrainConfig, path, plain)
    extra = parse_overrides([o[len("model.") :] for o in overrides if o.startswith("model.")])
    if extra:
        cfg = dataclasses.replace(cfg, model={**cfg.model, **extra})
    model_config(cfg.preset, cfg.model)  # fail early on a bad model key
    return cfg
