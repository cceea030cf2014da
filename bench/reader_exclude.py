"""Chains with and without ruling out earlier bridges, and the margin <abstain> gives up when it competes.

    python bench/reader_exclude.py [--data data/reader/dev.jsonl] [--hops 80] [--chains 120] [--reader DIR]

`ask --hops` passes the bridges a chain has visited to the reader as `exclude` (pipelines/answer.py):
when the reader's greedy answer is one of them, its next best generation is searched for and
<abstain> competes at its log-prob minus `retro.reader.EXCLUDE_MARGIN` nats (retro/reader.py
`_next_best`). For each variant (`off` = no exclusion, what `ask` did before; then margins in nats) this
scores, on the same seeded sample of chain records (`python -m evals.reader_data --split dev`, seeds
3000+, for choosing; `--data data/reader/heldout.jsonl` to report):
- per hop: each hop record (the question plus the latest bridge, BM25's top 10) answered with the
  earlier bridges excluded; right = the link's end, or an abstention when the link is not in the top 10
  or at the closing hop;
- complete: chains followed as `ask` follows them (retro.reader_eval's `_follow`), share ending on the
  chain's answer;
- the share of hop answers that needed the search (greedy answer excluded), and the reader's p50 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import retro.reader as reader_mod  # noqa: E402
from retro.reader_eval import _chain_name, _follow  # noqa: E402

MARGINS = (None, 0.0, 2.0, 3.0, 4.0, 6.0)  # None = no exclusion


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/reader/dev.jsonl")
    ap.add_argument("--hops", type=int, default=80, help="hop records per chain kind (seeded sample)")
    ap.add_argument("--chains", type=int, default=60, help="chains per kind followed whole")
    ap.add_argument("--reader", default=None, help="checkpoint folder (default: the shipped one)")
    ap.add_argument("--margins", default=",".join("off" if m is None else str(m) for m in MARGINS))
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        raise SystemExit(f"{args.data}: no such file (python -m evals.reader_data --split dev)")
    margins = [None if m == "off" else float(m) for m in args.margins.split(",")]
    reader = reader_mod.Reader.load(args.reader)
    recs = [json.loads(x) for x in open(args.data, encoding="utf-8")]
    hops, chains = defaultdict(list), defaultdict(lambda: defaultdict(dict))
    for r in recs:
        if "targets" in r:
            hops[_chain_name(r)].append(r)
            chains[_chain_name(r)][(r["hay"], r["id"].rsplit("-h", 1)[0])][r["hop"]] = r
    rng = random.Random(0)
    hop_sample = {n: rng.sample(v, min(args.hops, len(v))) for n, v in sorted(hops.items())}
    chain_sample = {
        n: [v[c] for c in rng.sample(sorted(v), min(args.chains, len(v)))] for n, v in sorted(chains.items())
    }
    print(f"{reader.name}, {args.data}")
    print("| chain kind | variant | per hop | complete | searched | p50 ms |")
    print("|---|---|---|---|---|---|")
    for kind in hop_sample:
        for margin in margins:
            if margin is not None:
                reader_mod.EXCLUDE_MARGIN = margin
            right, searched, lat = [], 0, []
            for r in hop_sample[kind]:
                gold = all(any(e in g for g in r["gold"][:10]) for e in range(len(r["evidence"])))
                expected = r["answers"][0] if gold and r["answers"] else None
                ex = tuple(r["targets"][: r["hop"]]) if margin is not None else ()
                t0 = time.perf_counter()
                a = reader.answer(r["question"], r["neighbours"][:10], exclude=ex)
                lat.append((time.perf_counter() - t0) * 1e3)
                right.append(a.abstained if expected is None else a.text == expected)
                searched += bool(ex) and reader.answer(r["question"], r["neighbours"][:10]).text in ex
            done = []
            for chain in chain_sample[kind]:
                if margin is None:  # `_follow` passes the bridges; a reader that ignores them is the old ask
                    done.append(_follow(_NoExclude(reader), chain, 10, "constrained", []))
                else:
                    done.append(_follow(reader, chain, 10, "constrained", []))
            name = "off" if margin is None else f"margin {margin:g}"
            print(
                f"| {kind} | {name} | {np.mean(right):.3f} (n {len(right)}) | {np.mean(done):.3f} "
                f"(n {len(done)}) | {searched / len(right):.2f} | {np.percentile(lat, 50):.0f} |",
                flush=True,
            )


class _NoExclude:
    """The reader as `ask` used it before exclusion: `exclude` ignored."""

    def __init__(self, reader):
        self.reader = reader

    def answer(self, question, neighbours, mode="constrained", exclude=()):
        return self.reader.answer(question, neighbours, mode=mode)


if __name__ == "__main__":
    main()
