"""Multi-part answers: how close <next> must come to </s> for the reader to give another part.

    python bench/reader_parts.py [--data data/reader/dev.jsonl] [-n 40] [--margins 0,1,2,3,4] [--reader DIR]

The reader stops a multi-part answer (multivalue, multiquery) early far more often than it gives a
wrong part. `retro.reader.PART_MARGIN`: where the greedy token is </s> but <next> is within that many
nats of it, the reader goes on to another part (a repeated part ends the answer). Margin 0 is the
plain greedy answer. For each margin, on the same seeded sample of n records per key/value task
(`python -m evals.reader_data --split dev`, seeds 3000+, for choosing; `--data
data/reader/heldout.jsonl` to report), BM25's top 10: recall (RULER's string_match_all, per part),
exact (the parts equal the expected set), wrong parts per answer, and the reader's p50 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import retro.reader as reader_mod  # noqa: E402

TASKS = ("single", "multikey", "multivalue", "multiquery")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/reader/dev.jsonl")
    ap.add_argument("-n", type=int, default=40, help="records per task (a seeded sample)")
    ap.add_argument("--margins", default="0,1,2,3,4", help="nats, comma-separated; 0 = greedy")
    ap.add_argument("--reader", default=None, help="checkpoint folder (default: the shipped one)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        raise SystemExit(f"{args.data}: no such file (python -m evals.reader_data --split dev)")
    margins = [float(m) for m in args.margins.split(",")]
    reader = reader_mod.Reader.load(args.reader)
    recs = [json.loads(x) for x in open(args.data, encoding="utf-8")]
    rng = random.Random(0)
    sample = {}
    for task in TASKS:
        rs = [r for r in recs if r["task"] == task]
        sample[task] = rng.sample(rs, min(args.n, len(rs)))
    print(f"{reader.name}, {args.data}")
    print("| task | margin | recall | exact | wrong parts / answer | p50 ms |")
    print("|---|---|---|---|---|---|")
    for task in TASKS:
        for margin in margins:
            reader_mod.PART_MARGIN = margin
            rec, exact, wrong, lat = [], [], [], []
            for r in sample[task]:
                a = reader.answer(r["question"], r["neighbours"][:10])
                parts = list(a.parts) if not a.abstained else []
                expected = r["answers"]
                rec.append(sum(e in parts for e in expected) / len(expected))
                exact.append(set(parts) == set(expected))
                wrong.append(sum(p not in expected for p in parts))
                lat.append(a.latency_ms)
            print(
                f"| {task} | {margin:g} | {np.mean(rec):.3f} | {np.mean(exact):.3f} | {np.mean(wrong):.2f} "
                f"| {np.percentile(lat, 50):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
