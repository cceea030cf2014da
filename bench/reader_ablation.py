"""Do the reader's answers come from the neighbours? Answer recall with BM25's top k as `ask` passes
them, the same neighbours shuffled, and k random chunks of the same index in their place.

    python bench/reader_ablation.py runs/reader-1m [--task single] [-k 10] [--mode constrained]

Reads a `retro eval niah` output folder (its cells' indexes and samples.jsonl), asks every sample of
the task three ways through the shipped reader (or --reader DIR) and prints a markdown table; writes
`reader_ablation.json` (command, run info, per-question rows) into the folder. If the answers come
from the neighbours, shuffling costs little (the reader reads every neighbour) and random chunks
drive answer recall to ~0 with abstention near 100%.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.scoring import answer_recall  # noqa: E402
from index import Index  # noqa: E402
from pipelines.answer import load_reader  # noqa: E402
from util.runinfo import atomic_write_json, run_info  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a `retro eval niah` --out folder")
    ap.add_argument("--task", default="single")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--mode", default="constrained", choices=("constrained", "free"))
    ap.add_argument("--reader", default=None, help="reader checkpoint folder (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "samples.jsonl").is_file():
        raise SystemExit(f"{run}/samples.jsonl: not a `retro eval niah` output folder")
    samples = [json.loads(x) for x in open(run / "samples.jsonl")]
    samples = [s for s in samples if s["task"] == args.task]
    if not samples:
        raise SystemExit(f"{run}: no samples of task {args.task!r}")
    reader = load_reader(args.reader)
    rng = random.Random(args.seed)
    rows, indexes = [], {}
    t0 = time.perf_counter()
    for s in samples:
        cell = s["cell"]["name"]
        idx = indexes.setdefault(cell, Index.open(run / "cells" / cell / "index"))
        top = [n["text"] for n in s["search"]["neighbours"]][: args.k]
        shuffled = rng.sample(top, len(top))
        rand = idx.neighbour_text([rng.randrange(idx.num_chunks) for _ in range(args.k)])
        row = {"sample_id": s["sample_id"], "cell": cell, "answers": s["answers"]}
        for name, texts in (("bm25 top-k", top), ("shuffled", shuffled), ("random chunks", rand)):
            a = reader.answer(s["question"], texts, mode=args.mode)
            row[name] = {
                "answer": a.text,
                "abstained": a.abstained,
                "recall": answer_recall(a.text, s["answers"]) or 0.0,
                "ms": round(a.latency_ms, 3),
            }
        rows.append(row)
    print(
        f"| {args.task}, k={args.k}, {args.mode} ({len(rows)} questions) | answer recall | abstained | p50 ms |"
    )
    print("|---|---|---|---|")
    table = {}
    for name in ("bm25 top-k", "shuffled", "random chunks"):
        rec = statistics.mean(r[name]["recall"] for r in rows)
        abst = statistics.mean(r[name]["abstained"] for r in rows)
        ms = statistics.median(r[name]["ms"] for r in rows)
        table[name] = {"answer_recall": round(rec, 4), "abstained": round(abst, 4), "p50_ms": round(ms, 1)}
        print(f"| {name} | {100 * rec:.1f}% | {100 * abst:.1f}% | {ms:.0f} |")
    atomic_write_json(
        run / "reader_ablation.json",
        {
            "command": " ".join(sys.argv),
            "run": run_info(),
            "reader": reader.name,
            "seconds": round(time.perf_counter() - t0, 1),
            "table": table,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
