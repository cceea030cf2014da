"""Evaluate a reader checkpoint on held-out QA records (data/reader/heldout.jsonl, seeds 2000+).

    python -m retro.reader_eval [--ckpt DIR ...] [--data data/reader/heldout.jsonl] [--per-task 40] [--k 10]

For each record the reader gets BM25's top-k neighbours (k=10 by default, as `ask` would pass them) and
both decoding modes are scored:
- recall: share of expected answer strings among the answer's parts (RULER's metric, per part);
- exact: the parts equal the expected answers (as sets);
- false_abstain: abstained although a gold neighbour was in the top-k;
- abstain: the same question with every gold neighbour removed from the list (the next BM25 results
  fill it to k): share of abstentions (a partial answer from a still-present part counts as wrong only
  for single-answer tasks, where nothing is left);
- chains (variable chains; two-hop entity questions, form 0 trained, form 1 unseen): `... per hop`
  scores each hop's record (the question plus the bridge, its own top-k, the earlier bridges excluded
  as `ask` excludes them; abstention expected when the link is not in the top-k, and at the closing
  hop); `chain_complete`: the chain followed as `ask`
  follows it, each answer choosing the next hop's record, share ending on the chain's answer;
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


def _score(ans, expected: list[str]) -> tuple[float, bool]:
    if not expected:
        return float(ans.abstained), ans.abstained
    parts = list(ans.parts) if not ans.abstained else []
    hit = sum(e in parts for e in expected)
    return hit / len(expected), set(parts) == set(expected)


def _chain_name(r: dict) -> str:
    """multihop, or twohop-f0 / twohop-f1 (form 1: wording never trained on)."""
    return r["task"] if r["task"] == "multihop" else f"twohop-{r['hay'].split('-')[1]}"


def _follow(reader: Reader, hops: dict[int, dict], k: int, mode: str, lat: list) -> bool:
    """Follow one chain as `ask` does: each answer is the bridge that picks the next hop's record (the
    question and that bridge, with its own top-k); complete when the chain's answer is the last one
    standing (the closing hop abstains or repeats it)."""
    by_bridge = {r["targets"][h - 1]: r for h, r in hops.items() if h}
    r, last, bridges = hops[0], None, []
    for _ in range(len(hops)):
        a = reader.answer(r["question"], r["neighbours"][:k], mode=mode, exclude=tuple(bridges))
        lat.append(a.latency_ms)
        if a.abstained or a.text in bridges:  # ask stops here too: the last answer stands
            break
        last = a.text
        bridges.append(last)
        if a.text not in by_bridge:
            break
        r = by_bridge[a.text]
    return last == hops[0]["final"]


def evaluate(
    reader: Reader, records: list[dict], k: int, per_task: int, modes: list[str], seed: int = 0
) -> dict:
    """Scores per mode and task (see the module doc)."""
    rng = random.Random(seed)
    by_task = defaultdict(list)
    chains = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if "targets" in r:  # a chain hop: scored per hop, and chains followed whole
            sid = r["id"].rsplit("-h", 1)[0]
            chains[_chain_name(r)][(r["hay"], sid)][r["hop"]] = r
            by_task[f"{_chain_name(r)} per hop"].append(r)
        else:
            by_task[r["task"]].append(r)
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
                has_gold = all(any(e in g for g in r["gold"][:k]) for e in range(len(r["evidence"])))
                expected = r["answers"] if has_gold or "targets" not in r else []
                bridges = tuple(r["targets"][: r["hop"]]) if "targets" in r else ()  # as ask passes them
                a = reader.answer(r["question"], nbs, mode=mode, exclude=bridges)
                lat.append(a.latency_ms)
                rec, ex = _score(a, expected)
                res[task]["recall"].append(rec)
                res[task]["exact"].append(ex)
                res[task]["gold_in_k"].append(has_gold)
                if has_gold and expected:
                    res[task]["false_abstain"].append(a.abstained)
                if r["evidence"]:
                    clean = [t for t, g in zip(r["neighbours"], r["gold"], strict=True) if not g][:k]
                    res[task]["abstain"].append(
                        reader.answer(r["question"], clean, mode=mode, exclude=bridges).abstained
                    )
        for task, by_sid in sorted(chains.items()):
            keys = sorted(by_sid)
            for key in rng.sample(keys, min(per_task, len(keys))):
                res[task]["chain_complete"].append(_follow(reader, by_sid[key], k, mode, lat))
        table = {
            t: {m: float(np.mean(v)) for m, v in d.items()} | {"n": max(len(v) for v in d.values())}
            for t, d in res.items()
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
    ap.add_argument(
        "--ckpt", action="append", default=None, help="checkpoint folder, repeatable (side by side)"
    )
    ap.add_argument("--data", default="data/reader/heldout.jsonl")
    ap.add_argument("--per-task", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--modes", default="constrained,free")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    records = [json.loads(x) for x in open(args.data)]
    out = {}
    for ckpt in args.ckpt or [None]:  # several checkpoints: the same records, one after the other
        reader = Reader.load(ckpt)
        res = evaluate(reader, records, args.k, args.per_task, args.modes.split(","))
        print(f"\n## {reader.name}\n{markdown(res)}", flush=True)
        out[ckpt or "shipped"] = res
    if args.out:
        from util.runinfo import atomic_write_json

        atomic_write_json(args.out, out if len(out) > 1 else res)


if __name__ == "__main__":
    main()
