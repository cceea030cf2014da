"""Would a threshold on the reader's doubt make it abstain more often when the answer is missing?

    python bench/reader_doubt.py [--data data/reader/dev.jsonl] [-n 240] [--reader DIR]

`ReaderAnswer.abstain_logprob` is the model's first-step log-prob of <abstain>. For n dev-split
questions (key/value tasks and chain hops that have a link; `python -m evals.reader_data --split dev`,
seeds 3000+, never reported elsewhere) the reader answers twice: from BM25's top 10, and from the top
10 with every gold neighbour removed. For each threshold the table gives the false abstention (gold
present), the abstention (gold removed) and the right answers lost, if the reader also abstained
whenever its doubt is above the threshold ("none" = the reader's own argmax, what ships).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.answer import load_reader  # noqa: E402

THRESHOLDS = (None, -0.3, -0.7, -1.0, -1.5, -2.0, -3.0)  # log-probs of <abstain>; None = no threshold


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/reader/dev.jsonl")
    ap.add_argument("-n", type=int, default=240, help="questions (a seeded sample)")
    ap.add_argument("--reader", default=None, help="checkpoint folder (default: the shipped one)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        raise SystemExit(f"{args.data}: no such file (python -m evals.reader_data --split dev)")
    reader = load_reader(args.reader)
    recs = [json.loads(x) for x in open(args.data, encoding="utf-8")]
    recs = [r for r in recs if r["evidence"]]  # a closing chain hop has nothing to remove
    random.Random(0).shuffle(recs)
    rows = []
    for r in recs[: args.n]:
        a = reader.answer(r["question"], r["neighbours"][:10])
        clean = [t for t, g in zip(r["neighbours"], r["gold"], strict=True) if not g][:10]
        b = reader.answer(r["question"], clean)
        right = not a.abstained and set(a.parts) == set(r["answers"])
        rows.append((right, a.abstained, a.abstain_logprob, b.abstained, b.abstain_logprob))
    print(
        f"| threshold | false abstention | abstention, gold removed | right answers lost (of {sum(x[0] for x in rows)}) |"
    )
    print("|---|---|---|---|")
    for th in THRESHOLDS:

        def off(abstained: bool, doubt: float, th=th) -> bool:
            return abstained or (th is not None and doubt > th)

        fa = sum(off(x[1], x[2]) for x in rows) / len(rows)
        ab = sum(off(x[3], x[4]) for x in rows) / len(rows)
        lost = sum(x[0] and off(x[1], x[2]) for x in rows)
        print(f"| {'none' if th is None else th} | {fa:.3f} | {ab:.3f} | {lost} |")


if __name__ == "__main__":
    main()
