"""Evaluate a reader checkpoint on held-out QA records (data/reader/heldout.jsonl, seeds 2000+).

    python -m retro.reader_eval [--ckpt DIR] [--data data/reader/heldout.jsonl] [--per-task 40] [--k 10]

For each record the reader gets BM25's top-k neighbours (k=10 by default, as `ask` would pass them) and
both decoding modes are scored:
- recall: share of expected answer strings among the answer's parts (RULER's metric, per part);
- exact: the parts equal the expected answers (as sets);
- false_abstain: abstained although a gold neighbour was in the top-k;
- abstain: the same question with every gold neighbour removed from the list (the next BM25 results
  fill it to k): share of abstentions (a partial answer from a still-present part counts as wrong only
  for single-answer tasks, where nothing is left);
- chains: multihop chains followed hop by hop (each hop's answer must be the next variable; the next
  hop's neighbours are BM25's for the record of that variable): share complete;
- latency p50 / p90 per answer() call at k neighbours.
Writes a markdown table to stdout and results json to --out.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

import numpy as np

from retro.reader import Reader


def _twohop_expected(r: dict, k: int) -> list[str]:
    """Two-hop: both facts in the top-k -> the answer; fact 1 only -> the bridge; else [] (abstain)."""
    present = {e for g in r["gold"][:k] for e in g}
    return list(r["answers"]) if {0, 1} <= present else [r["bridge"]] if 0 in present else []


def _score(ans, expected: list[str]) -> tuple[float, bool]:
    if not expected:
        return float(ans.abstained), ans.abstained
    parts = list(ans.parts) if not ans.abstained else []
    hit = sum(e in parts for e in expected)
    return hit / len(expected), set(parts) == set(expected)


def evaluate(
    reader: Reader, records: list[dict], k: int, per_task: int, modes: list[str], seed: int = 0
) -> dict:
    """Scores per mode and task (see the module doc)."""
    rng = random.Random(seed)
    by_task = defaultdict(list)
    for r in records:
        if r["task"] == "twohop":  # hop 0 and hop 1 scored apart; form 1 (unseen wording) apart
            r = {
                **r,
                "task": f"twohop-{r['hay'].split('-')[1]}-{r['id'][-2:]}",
                "answers": _twohop_expected(r, k),
            }
        if r["task"] != "multihop":
            by_task[r["task"]].append(r)
    chains = defaultdict(dict)
    for r in records:
        if r["task"] == "multihop":
            sid, hop = r["id"].rsplit("-h", 1)
            chains[(r["hay"], sid)][int(hop)] = r
    out = {}
    for mode in modes:  # warm up: compile the decode steps for each prefix length before timing
        for r in [next(iter(v)) for v in by_task.values()][:6]:
            reader.answer(r["question"], r["neighbours"][:k], mode=mode)
    for mode in modes:
        res: dict = defaultdict(lambda: defaultdict(list))
        lat = []
        for task, recs in sorted(by_task.items()):
            for r in rng.sample(recs, min(per_task, len(recs))):
                nbs = r["neighbours"][:k]
                if "bridge" in r:  # two-hop: the expected answer already follows the evidence present
                    has_gold = bool(r["answers"])
                else:
                    has_gold = all(any(e in g for g in r["gold"][:k]) for e in range(len(r["evidence"])))
                a = reader.answer(r["question"], nbs, mode=mode)
                lat.append(a.latency_ms)
                rec, ex = _score(a, r["answers"])
                res[task]["recall"].append(rec)
                res[task]["exact"].append(ex)
                res[task]["gold_in_k"].append(has_gold)
                if has_gold:
                    res[task]["false_abstain"].append(a.abstained)
                clean = [t for t, g in zip(r["neighbours"], r["gold"], strict=True) if not g][:k]
                b = reader.answer(r["question"], clean, mode=mode)
                res[task]["abstain"].append(b.abstained)
        keys = sorted(chains)
        for key in rng.sample(keys, min(per_task, len(keys))):
            hops = chains[key]
            ok = True
            for h in sorted(hops):
                r = hops[h]
                a = reader.answer(r["question"], r["neighbours"][:k], mode=mode)
                lat.append(a.latency_ms)
                good = not a.abstained and a.text == r["answers"][0]
                res["multihop"]["recall"].append(float(good))
                res["multihop"]["exact"].append(good)
                if not good:
                    ok = False
                    break
            res["multihop"]["chain_complete"].append(ok)
            last = hops[max(hops)]
            clean = [t for t, g in zip(last["neighbours"], last["gold"], strict=True) if not g][:k]
            res["multihop"]["abstain"].append(reader.answer(last["question"], clean, mode=mode).abstained)
        table = {
            t: {m: float(np.mean(v)) for m, v in d.items()} | {"n": len(d["recall"])} for t, d in res.items()
        }
        table["_latency_ms"] = {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90))}
        out[mode] = table
    return out


def markdown(results: dict) -> str:
    """One table per mode."""
    lines = []
    cols = ["n", "recall", "exact", "false_abstain", "abstain", "chain_complete", "gold_in_k"]
    for mode, table in results.items():
        lat = table["_latency_ms"]
        lines += [
            f"\n{mode}: latency p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms",
            "",
            "| task | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for task, row in table.items():
            if task.startswith("_"):
                continue
            cells = [f"{row[c]:.3f}" if c in row and c != "n" else str(row.get(c, "")) for c in cols]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """CLI (see the module doc)."""
    ap = argparse.ArgumentParser(description="evaluate the RETRO reader on held-out QA records")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--data", default="data/reader/heldout.jsonl")
    ap.add_argument("--per-task", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--modes", default="constrained,free")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    reader = Reader.load(args.ckpt)
    records = [json.loads(x) for x in open(args.data)]
    res = evaluate(reader, records, args.k, args.per_task, args.modes.split(","))
    print(markdown(res))
    if args.out:
        from util.runinfo import atomic_write_json

        atomic_write_json(args.out, res)


if __name__ == "__main__":
    main()
