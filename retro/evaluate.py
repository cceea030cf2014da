"""Held-out bits-per-byte with retrieval on and off, overall and leakage-filtered (`retro eval lm`).

Scoring unit: a chunk u >= 1 of a held-out sequence. Its M tokens are predicted by positions
u*M - 1 ... u*M + M-2, all of which read (through CCA) the neighbours retrieved with chunk u-1;
chunk 0 of each sequence is never scored (it has no retrieval and its first token no context).
bpb = sum of NLL (nats) / ln 2 / sum of the chunks' UTF-8 bytes (from the store's chunk_bytes).

Leakage filter (the paper's alpha, section 2.6): a chunk's leakage is the longest run of tokens it
shares with a set of neighbours (each chunk + continuation, R = 2M tokens), divided by M; "filtered"
bpb keeps chunks with leakage <= alpha (0.125 = 8 of 64 tokens). Which neighbours (`leakage`):
- "read" (the default; a deviation from the paper): the K neighbours actually read when predicting
  chunk u, i.e. those retrieved with chunk u-1, whose continuations are what can leak into it. It
  measures the overlap the model could copy from, with the same K as the bpb;
- "paper": the `leakage_k` (10 in the paper) nearest training chunks of chunk u itself, from the
  neighbour store (so by the store's retriever, BM25 or static, where the paper used BERT
  embeddings). The store must hold that many neighbours per chunk (`retro neighbours --k 10`).

Shapes: B batch, L length, C chunks, M chunk length, K neighbours, R retrieved length.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from retro.checkpoint import load_model
from retro.data import NeighbourStore
from util.runinfo import atomic_write_json, atomic_write_text, run_info

LEAKAGE_FILTERS = ("read", "paper")  # which neighbours a chunk's leakage is measured against (module doc)


def bits_per_byte(nats, nbytes):
    """Summed NLL in nats over the bytes they predict -> bits per byte (bytes floored at 1)."""
    return nats / math.log(2) / np.maximum(nbytes, 1.0)


def longest_common_run(a: np.ndarray, b: np.ndarray) -> int:
    """Longest run of consecutive tokens shared by a [M] and b [R] (negative ids never match)."""
    best = 0
    prev = np.zeros(len(b) + 1, np.int32)
    for x in a:
        cur = np.zeros_like(prev)
        if x >= 0:
            cur[1:] = np.where(b == x, prev[:-1] + 1, 0)
            best = max(best, int(cur.max()))
        prev = cur
    return best


def chunk_leakage(chunk: np.ndarray, neighbours: np.ndarray, pad_id: int) -> float:
    """chunk [M], neighbours [K, R] -> max over neighbours of longest common run / M (padding ignored)."""
    a = np.where(chunk == pad_id, -1, chunk)
    runs = [longest_common_run(a, np.where(n == pad_id, -2, n)) for n in neighbours]
    return max(runs, default=0) / len(chunk)


def leakage_per_chunk(
    store: NeighbourStore, seqs: np.ndarray, leakage: str = "read", k: int = 2, leakage_k: int = 10
) -> tuple[np.ndarray, int]:
    """seqs: [S, C] chunk ids -> (leakage [S, C-1] of the scored chunks 1..C-1, neighbours per chunk).

    leakage "read": against the k neighbours of chunk u-1 (read when predicting chunk u); "paper":
    against the leakage_k nearest neighbours of chunk u itself (see the module doc)."""
    if leakage not in LEAKAGE_FILTERS:
        raise ValueError(f"eval lm: leakage filter {leakage!r}: expected one of {', '.join(LEAKAGE_FILTERS)}")
    held = store.neighbours.shape[1]
    if leakage == "paper" and not 1 <= leakage_k <= held:
        raise ValueError(
            f"eval lm: --leakage paper uses the {leakage_k} nearest neighbours of each chunk, but "
            f"{store.path} holds {held} per chunk: rebuild it with `retro neighbours --k {max(leakage_k, 1)}` "
            f"or pass --leakage-k {held}"
        )
    n, c = seqs.shape
    r = 2 * store.chunk_len
    if leakage == "read":  # read while predicting chunk u: the neighbours of chunk u-1
        ids, kl = np.asarray(store.neighbours)[seqs[:, :-1].reshape(-1)][:, :k], k
    else:  # the paper's: the nearest training chunks of chunk u itself
        ids, kl = np.asarray(store.neighbours)[seqs[:, 1:].reshape(-1)][:, :leakage_k], leakage_k
    nb_tok = store.neighbour_tokens(ids, r).reshape(n, c - 1, kl, r)
    chunk_tok = np.asarray(store.chunks)[seqs[:, 1:]]
    leak = np.array(
        [[chunk_leakage(chunk_tok[s, u], nb_tok[s, u], store.pad_id) for u in range(c - 1)] for s in range(n)]
    )
    return leak.reshape(n, c - 1), kl


def _nll_fn(model):
    """(state, jitted f(state, tokens [B, L], neighbours [B, C, K, R] | None) -> NLL nats [B, L-1], 0 at pad)."""
    graphdef, state = nnx.split(model)
    pad = model.cfg.pad_id

    def nll_tokens(state, tokens, neighbours):
        logits = nnx.merge(graphdef, state)(tokens[:, :-1], neighbours)
        out = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
        return jnp.where(tokens[:, 1:] != pad, out, 0.0)

    return state, jax.jit(nll_tokens)


def evaluate_runs(
    runs: list[str],
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    k: int = 2,
    seq_len: int = 512,
    max_sequences: int = 0,
    batch_size: int = 8,
    alpha: float = 0.125,
    quiet: bool = False,
    leakage: str = "read",
    leakage_k: int = 10,
) -> dict:
    """Score each run on the store's held-out sequences with retrieval on (if it has CCA) and off.

    leakage: "read" (the neighbours read when predicting a chunk: those of chunk u-1, K = k) or
    "paper" (the `leakage_k` nearest neighbours of chunk u itself); see the module doc."""
    from tqdm import tqdm

    store = NeighbourStore(data)
    m = store.chunk_len
    seqs = store.sequences("heldout", seq_len)
    if max_sequences:
        seqs = seqs[:max_sequences]
    if len(seqs) == 0:
        raise ValueError(f"{data}: no held-out sequence of {seq_len} tokens")
    n = len(seqs)
    padded = np.concatenate([seqs, np.repeat(seqs[-1:], (-n) % batch_size, axis=0)])
    c = seqs.shape[1]
    scored = seqs[:, 1:]  # [S, C-1] chunk ids that are scored
    nbytes = np.asarray(store.chunk_bytes)[scored].astype(np.float64)
    leak, kl = leakage_per_chunk(store, seqs, leakage, k, leakage_k)
    keep = leak <= alpha
    rows, per_chunk = [], {}
    for run in runs:
        model, step = load_model(run)
        state, fn = _nll_fn(model)
        modes = ["on", "off"] if model.encoder is not None else ["off"]
        for mode in modes:
            kk = k if mode == "on" else 0
            sums = np.zeros((len(padded), c - 1))
            for i in tqdm(range(0, len(padded), batch_size), desc=f"{Path(run).name} {mode}", disable=quiet):
                tok, nb = store.batch(padded[i : i + batch_size], kk, model.cfg.retrieved_len)
                nll = np.asarray(fn(state, jnp.asarray(tok), jnp.asarray(nb) if kk else None))
                sums[i : i + batch_size] = nll[:, m - 1 :].reshape(len(tok), c - 1, m).sum(-1)
            sums = sums[:n]
            row = {
                "run": str(run),
                "step": step,
                "retrieval": mode,
                "bpb": float(bits_per_byte(sums.sum(), nbytes.sum())),
                "bpb_filtered": float(bits_per_byte(sums[keep].sum(), nbytes[keep].sum())),
            }
            rows.append(row)
            per_chunk[f"{run}:{mode}"] = sums
    res = {
        "rows": rows,
        "alpha": alpha,
        "leakage": leakage,
        "leakage_k": kl,
        "k": k,
        "seq_len": seq_len,
        "sequences": n,
        "chunks_scored": int(keep.size),
        "chunks_filtered": int(keep.sum()),
        "bytes": float(nbytes.sum()),
        "data": str(Path(data).resolve()),
        "run_info": run_info(),
    }
    if out:
        out = Path(out)
        atomic_write_json(out / "results.json", res)
        lines = [
            json.dumps(
                {
                    "seq": s,
                    "chunk": int(scored[s, u]),
                    "leakage": float(leak[s, u]),
                    "bytes": float(nbytes[s, u]),
                    **{key: float(v[s, u]) for key, v in per_chunk.items()},
                }
            )
            for s in range(n)
            for u in range(c - 1)
        ]
        atomic_write_text(out / "per_chunk.jsonl", "\n".join(lines) + "\n")
    return res


def markdown_table(res: dict) -> str:
    """The rows of `evaluate_runs` as a markdown table."""
    head = f"| run | step | retrieval | bpb | bpb (leakage <= {res['alpha']}) |\n|---|---|---|---|---|\n"
    body = "".join(
        f"| {r['run']} | {r['step']} | {r['retrieval']} | {r['bpb']:.4f} | {r['bpb_filtered']:.4f} |\n"
        for r in res["rows"]
    )
    foot = (
        f"\n{res['sequences']} held-out sequences, {res['chunks_scored']} chunks scored, "
        f"{res['chunks_filtered']} pass the leakage filter"
    )
    if "leakage" in res:
        which = (
            "read by it (those of chunk u-1)"
            if res["leakage"] == "read"
            else "nearest to chunk u (the paper's)"
        )
        foot += f" (longest common run with the {res['leakage_k']} neighbours {which})"
    return head + body + foot


def read_per_chunk(eval_dir: str | os.PathLike) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """An eval folder's per_chunk.jsonl -> ({"RUN:on"/"RUN:off": nats [S, U]}, bytes [S, U],
    leakage [S, U]) with S sequences of U scored chunks each, in file order."""
    path = Path(eval_dir) / "per_chunk.jsonl"
    if not path.is_file():
        raise ValueError(f"{eval_dir}: no per_chunk.jsonl (write one with `retro eval lm ... --out DIR`)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seq = np.array([r["seq"] for r in rows])
    n_seq = int(seq.max()) + 1
    if len(rows) % n_seq:
        raise ValueError(f"{path}: {len(rows)} rows do not split into {n_seq} sequences of equal length")
    shape = (n_seq, len(rows) // n_seq)
    keys = [k for k in rows[0] if k.endswith((":on", ":off"))]
    nats = {k: np.array([r[k] for r in rows]).reshape(shape) for k in keys}
    nbytes = np.array([r["bytes"] for r in rows]).reshape(shape)
    leak = np.array([r["leakage"] for r in rows]).reshape(shape)
    return nats, nbytes, leak


def paired_bpb_difference(
    nats_a: np.ndarray,
    nats_b: np.ndarray,
    nbytes: np.ndarray,
    mask: np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """bpb of A minus bpb of B on the same chunks, with a 95% bootstrap interval over sequences.

    nats_a, nats_b, nbytes, mask: [S, U] (S held-out sequences, U scored chunks each; mask selects
    chunks, e.g. leakage <= alpha). Sequences are resampled with replacement `resamples` times
    (numpy default_rng(seed)); each resample's bpb is its summed nats / ln 2 / its summed bytes.
    Returns {"a", "b", "diff", "lo", "hi"} (the 2.5 and 97.5 percentiles of the resampled diff)."""
    nats_a, nats_b, nbytes = (np.asarray(x, np.float64) for x in (nats_a, nats_b, nbytes))
    if not (nats_a.shape == nats_b.shape == nbytes.shape) or nats_a.ndim != 2:
        raise ValueError(
            f"nats_a, nats_b, nbytes: need equal [S, U] shapes, got {nats_a.shape}, {nats_b.shape}, {nbytes.shape}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    mask = np.ones(nats_a.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != nats_a.shape or not mask.any():
        raise ValueError(f"mask: need shape {nats_a.shape} with at least one chunk selected")
    sa, sb, sbytes = (np.where(mask, x, 0.0).sum(1) for x in (nats_a, nats_b, nbytes))  # [S] each
    idx = np.random.default_rng(seed).integers(0, len(sa), size=(resamples, len(sa)))  # [N, S]
    resampled_bytes = sbytes[idx].sum(1)
    diffs = bits_per_byte(sa[idx].sum(1), resampled_bytes) - bits_per_byte(sb[idx].sum(1), resampled_bytes)
    a, b = bits_per_byte(sa.sum(), sbytes.sum()), bits_per_byte(sb.sum(), sbytes.sum())
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"a": float(a), "b": float(b), "diff": float(a - b), "lo": float(lo), "hi": float(hi)}
