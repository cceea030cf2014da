"""Train the reader: `retro train-reader --config configs/reader.yaml` from nothing (evals/cli.py makes
the QA data with evals.reader_data when it is missing, then runs `main` here: tokenizer, training,
retro/assets/reader/). `python -m retro.reader_train --config ...` trains on data already made.

Recipe (DESIGN.md's plateau lessons): loss on answer tokens only; AdamW with linear warmup then a
constant learning rate (no decay before copying has been learnt); a curriculum on distractors: the
first `curriculum_steps` steps see the gold neighbour(s) with at most one distractor, then K_train
neighbours of BM25's top-10 with every gold neighbour kept; `abstain_frac` of samples have their gold
neighbours removed and the target <abstain> (partly removed multi-part evidence: the target keeps the
parts still present). Few neighbours at training (k_train), more at inference (the copy head's softmax
and CCA run over however many are given).

Shapes: B batch, L length, C chunks, K neighbours, R retrieved length.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from retro.reader_layout import (
    ReaderConfig,
    ReaderTokenizer,
    answer_ids,
    mark_matches,
    neighbour_block,
    question_prefix,
    train_tokenizer,
    training_example,
)
from retro.reader_model import ReaderNet
from util.configs import config_to_dict, resolve_config
from util.runinfo import atomic_write_bytes, atomic_write_json, atomic_write_text, run_info


@dataclass(frozen=True)
class ReaderTrainConfig:
    """A reader training run (YAML + key=value overrides)."""

    data: str = (
        "data/reader"  # folder with train*.jsonl (made by evals.reader_data; `retro train-reader` makes it)
    )
    out: str = "retro/assets/reader"  # where config.json, tokenizer.model, weights.npz go
    reader: dict = field(default_factory=dict)  # ReaderConfig overrides (network and layout)
    steps: int = 2000  # optimizer steps
    minutes: float = 0.0  # stop after this wall time too (0 = no limit)
    batch_size: int = 16  # B
    k_train: int = 3  # K neighbours per training sample
    lr: float = 1e-3  # peak = constant learning rate after warmup
    warmup_steps: int = 100  # linear warmup
    weight_decay: float = 0.01  # AdamW decay
    clip: float = 1.0  # global gradient-norm clip
    curriculum_steps: int = 200  # steps with the gold neighbour(s) and at most one distractor
    abstain_frac: float = 0.15  # samples whose gold neighbours are removed
    log_every: int = 25  # steps between log lines
    save_every: int = 200  # steps between weight exports
    seed: int = 1000  # sampling and init seed
    init: str = ""  # start from this checkpoint folder (its tokenizer and network config), "" = from scratch
    max_train_answer_chunks: int = (
        5  # skip questions whose answer needs more chunks (fewer shapes to compile)
    )
    tasks: tuple[str, ...] = ()  # only records of these tasks ((): all)
    then: str = ""  # a next-stage config run after this one, initialised from this one's output
    decay: bool = False  # after warmup, decay the learning rate linearly to 0 at `steps` (a final stage)
    lm_data: str = ""  # LM samples of real text with neighbours (retro/reader_lm.py make), "" = none
    lm_frac: float = 0.0  # share of steps that are language-modelling batches from lm_data


class Examples:
    """Tokenized QA records and the sampler that lays them out as training batches."""

    def __init__(self, records: list[dict], tok: ReaderTokenizer, rcfg: ReaderConfig, k: int, seed: int):
        """Pre-tokenizes every question, answer and neighbour once."""
        self.rcfg, self.k, self.tok = rcfg, k, tok
        self.rng = random.Random(seed)
        self.items = []
        for r in records:
            nbs = [tok.encode(t)[: rcfg.retrieved_len] for t in r["neighbours"]]
            extra = [tok.encode(t)[: rcfg.retrieved_len] for t in r["extra"]]
            gold = [set(g) for g in r["gold"]] + [
                {e for e, ev in enumerate(r["evidence"]) if ev in t} for t in r["extra"]
            ]
            prefix = question_prefix(tok.encode(r["question"]), rcfg)
            parts = [tok.encode(a) for a in r["answers"]]
            a = -(-len(answer_ids(parts)) // rcfg.chunk_len)
            if a > rcfg.max_answer_chunks:
                continue
            qids = tok.encode(r["question"])
            self.items.append((prefix, parts, nbs + extra, gold, len(nbs), a, r["task"], qids))
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, it in enumerate(self.items):
            self.buckets.setdefault((len(it[0]), it[5]), []).append(i)
        self.keys = sorted(self.buckets)
        self.weights = np.array([len(self.buckets[k]) for k in self.keys], float)

    def sample(self, i: int, few: bool, abstain: bool):
        """One example of item i: (prefix, target ids, neighbour block [K, R]).

        Key/value tasks: part e of the answer needs evidence e; abstain samples forbid a random non-empty
        subset of the evidence (the target keeps the parts still present, <abstain> when none is).
        Chain hops are records of the same form (one link; the closing hop has none: always <abstain>)."""
        prefix, parts, nbs, gold, n_top, _, _, qids = self.items[i]  # (answer chunks, task) unused
        n_ev = len(parts)
        need: set[int] = set(range(n_ev))
        forbid: set[int] = set()
        if abstain and n_ev:
            forbid = set(self.rng.sample(range(n_ev), self.rng.randint(1, n_ev)))
            need = set()
        pool = [j for j in range(len(nbs)) if not (gold[j] & forbid)]
        top = [j for j in pool if j < min(n_top, 10)]
        chosen: list[int] = []
        for e in sorted(need):  # one gold neighbour per needed evidence string (top-10 first, then any)
            if any(e in gold[j] for j in chosen):
                continue
            cands = [j for j in top if e in gold[j]] or [j for j in pool if e in gold[j]]
            if cands:
                chosen.append(self.rng.choice(cands))
        n_dis = self.rng.randint(0, 1) if few and not abstain else self.k - len(chosen)
        rest = [j for j in (top if not abstain else pool[:12]) if j not in chosen]
        chosen += self.rng.sample(rest, max(0, min(n_dis, len(rest), self.k - len(chosen))))
        chosen = chosen[: self.k]
        self.rng.shuffle(chosen)
        present = {e for j in chosen for e in gold[j]}
        keep = [p for e, p in enumerate(parts) if e in present and e not in forbid]
        block = neighbour_block([nbs[j] for j in chosen], self.k, self.rcfg.retrieved_len)
        return (
            prefix,
            answer_ids(keep),
            mark_matches(block, qids, self.rcfg.vocab_size, self.rcfg.match_levels),
        )

    def batch(self, b: int, few: bool, abstain_frac: float):
        """A batch of one shape bucket: tokens, targets, weights [B, L]; neighbours [B, C, K, R]."""
        key = self.keys[self.rng.choices(range(len(self.keys)), weights=self.weights)[0]]
        idx = self.buckets[key]
        rows = []
        for _ in range(b):
            prefix, target, nb = self.sample(self.rng.choice(idx), few, self.rng.random() < abstain_frac)
            target = target + [0] * (key[1] * self.rcfg.chunk_len - len(target))  # pad to the bucket's chunks
            rows.append(training_example(prefix, target, nb, self.rcfg))
        tok, tgt, w, nb = (np.stack(x) for x in zip(*rows, strict=True))
        w = w * (tgt != 0)  # no loss on the bucket padding
        return tok, tgt, w, nb


def save_weights(net: ReaderNet, path: Path) -> None:
    """All parameters as float32 arrays in one .npz (keys: '/'-joined parameter paths)."""
    flat = nnx.state(net, nnx.Param).flat_state()
    arrays = {"/".join(map(str, k)): np.asarray(v.get_value(), np.float32) for k, v in flat}
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_weights(net: ReaderNet, path: Path, strict: bool = True) -> None:
    """Fill `net`'s parameters from save_weights' .npz (every parameter must be present unless not
    `strict`: then missing ones keep their initial values, e.g. a zero-initialised new feature)."""
    with np.load(path) as data:
        arrays = dict(data)
    state = nnx.state(net, nnx.Param)
    for k, v in state.flat_state():
        name = "/".join(map(str, k))
        if name not in arrays and not strict:
            continue
        if name not in arrays:
            raise ValueError(f"{path}: missing parameter {name}")
        if tuple(arrays[name].shape) != tuple(v.shape):
            raise ValueError(f"{path}: parameter {name} has shape {arrays[name].shape}, expected {v.shape}")
        v.set_value(jnp.asarray(arrays[name]))
    nnx.update(net, state)


def make_step(graphdef, tx):
    """The jitted train step: (params, opt_state, batch) -> (params, opt_state, loss, token accuracy)."""

    def loss_fn(params, tok, tgt, w, nb):
        net = nnx.merge(graphdef, params)
        lp = net.answer_logprobs(tok, nb, tgt)
        return -(lp * w).sum() / jnp.maximum(w.sum(), 1.0), lp

    @jax.jit
    def step(params, opt_state, tok, tgt, w, nb):
        (loss, lp), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, tok, tgt, w, nb)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        good = (
            ((lp > np.log(0.5)) | (w == 0)).all(-1).mean()
        )  # sequences whose every answer token has p > 0.5
        return params, opt_state, loss, good

    return step


def _tokenizer(data: Path, records: list[dict], rcfg: ReaderConfig) -> bytes:
    lines = sorted({r["question"] for r in records}) + sorted(
        {t for r in records for t in r["neighbours"][:6]}
    )
    random.Random(0).shuffle(lines)
    return train_tokenizer(lines[:60_000], rcfg.vocab_size)


def train(cfg: ReaderTrainConfig) -> dict:
    """Train and export; returns a summary dict (also written to out/train.json)."""
    t0 = time.perf_counter()
    data = Path(cfg.data)
    if not (data / "train.jsonl").is_file():
        raise FileNotFoundError(
            f"{data}/train.jsonl: no reader training data; `retro train-reader --config ...` makes it "
            f"(or python -m evals.reader_data --out {data} --split train)"
        )
    records = [json.loads(x) for f in sorted(data.glob("train*.jsonl")) for x in open(f)]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.init:
        init_cfg = json.loads((Path(cfg.init) / "config.json").read_text())
        rcfg = ReaderConfig.from_dict({**init_cfg, **cfg.reader})  # e.g. a new match_levels on old weights
        spm_bytes = (Path(cfg.init) / "tokenizer.model").read_bytes()
    else:
        rcfg = ReaderConfig.from_dict({**ReaderConfig().to_dict(), **cfg.reader})
        spm_bytes = _tokenizer(data, [r for r in records if r["task"] != "twohop"], rcfg)
    atomic_write_bytes(out / "tokenizer.model", spm_bytes)
    tok = ReaderTokenizer(spm_bytes)
    rcfg = dataclasses.replace(rcfg, vocab_size=tok.vocab_size)
    atomic_write_json(out / "config.json", rcfg.to_dict())
    if cfg.tasks:
        records = [r for r in records if r["task"] in cfg.tasks]
    ex = Examples(
        records,
        tok,
        dataclasses.replace(rcfg, max_answer_chunks=cfg.max_train_answer_chunks),
        cfg.k_train,
        cfg.seed,
    )
    print(
        f"{len(ex.items)} training questions, buckets {dict(zip(ex.keys, ex.weights.astype(int).tolist(), strict=True))}",
        flush=True,
    )
    lm = None
    if cfg.lm_frac > 0:
        from retro.reader_lm import LMSamples

        if not Path(cfg.lm_data).is_file():  # made with this run's tokenizer (LMDataConfig's corpus)
            from retro.reader_lm import LMDataConfig, make

            print(f"making {cfg.lm_data} (retro/reader_lm.py)", flush=True)
            make(LMDataConfig(), spm_bytes, Path(cfg.lm_data).parent, rcfg.chunk_len)
        lm = LMSamples(Path(cfg.lm_data), tok, spm_bytes, rcfg, cfg.k_train, cfg.seed)
        print(f"{len(lm.items)} LM samples, {cfg.lm_frac:.0%} of the steps", flush=True)
    lm_rng = random.Random(cfg.seed + 1)
    net = ReaderNet(
        rcfg.model_config(), rcfg.copy_dim, rngs=nnx.Rngs(cfg.seed), match_levels=rcfg.match_levels
    )
    if cfg.init:
        load_weights(net, Path(cfg.init) / "weights.npz", strict=False)
    after = (
        optax.linear_schedule(cfg.lr, 0.0, max(1, cfg.steps - cfg.warmup_steps))
        if cfg.decay
        else optax.constant_schedule(cfg.lr)
    )
    sched = optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps), after], [cfg.warmup_steps]
    )
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adamw(sched, weight_decay=cfg.weight_decay))
    graphdef, params = nnx.split(net, nnx.Param)
    opt_state = tx.init(params)
    step_fn = make_step(graphdef, tx)
    log = []
    loss_acc, good_acc, n_acc, toks = 0.0, 0.0, 0, 0
    lm_acc, lm_n = 0.0, 0
    t_train = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        if lm is not None and lm_rng.random() < cfg.lm_frac:  # a language-modelling step
            tk, tg, w, nb = lm.batch(cfg.batch_size)
            params, opt_state, loss, _ = step_fn(params, opt_state, tk, tg, w, nb)
            lm_acc, lm_n, toks = lm_acc + float(loss), lm_n + 1, toks + tk.size
        else:
            tk, tg, w, nb = ex.batch(cfg.batch_size, step <= cfg.curriculum_steps, cfg.abstain_frac)
            params, opt_state, loss, good = step_fn(params, opt_state, tk, tg, w, nb)
            loss_acc, good_acc, n_acc, toks = (
                loss_acc + float(loss),
                good_acc + float(good),
                n_acc + 1,
                toks + tk.size,
            )
        if step % cfg.log_every == 0:
            el = time.perf_counter() - t_train
            row = {
                "step": step,
                "loss": loss_acc / max(n_acc, 1),
                "seq_ok": good_acc / max(n_acc, 1),
                **({"lm_loss": lm_acc / max(lm_n, 1)} if lm is not None else {}),
                "min": el / 60,
                "tok_s": toks / el,
            }
            log.append(row)
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
            loss_acc, good_acc, n_acc, lm_acc, lm_n = 0.0, 0.0, 0, 0.0, 0
        if step % cfg.save_every == 0:
            nnx.update(net, params)
            save_weights(net, out / "weights.npz")
        if cfg.minutes and time.perf_counter() - t_train > cfg.minutes * 60:
            break
    nnx.update(net, params)
    save_weights(net, out / "weights.npz")
    summary = {
        "config": config_to_dict(cfg),
        "reader": rcfg.to_dict(),
        "steps": step,
        "log": log,
        "wall_s": time.perf_counter() - t0,
        **run_info(),
    }
    atomic_write_text(out / "train.json", json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    """CLI: --config YAML plus key=value overrides."""
    ap = argparse.ArgumentParser(description="train the RETRO reader")
    ap.add_argument("--config", default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = resolve_config(ReaderTrainConfig, args.config, args.overrides)
    while True:
        s = train(cfg)
        print(f"done: {s['steps']} steps in {s['wall_s'] / 60:.1f} min -> {cfg.out}", flush=True)
        if not cfg.then:
            break
        nxt = resolve_config(ReaderTrainConfig, cfg.then)
        cfg = dataclasses.replace(nxt, init=cfg.out) if not nxt.init else nxt


if __name__ == "__main__":
    main()
