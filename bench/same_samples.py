"""Do two eval runs agree? Per retriever: needles found in each, and samples whose top-k ids are identical.

    python bench/same_samples.py RUN_A/samples.jsonl RUN_B/samples.jsonl

Samples are matched by their key (cell / retriever / question id); a run still going can be read as
it stands (only the keys both hold are compared for ids; each run's recall is over what it has).
Used for before/after runs of an index change that must not change results (BENCHMARKS.md, "Bytes
per token by part (issue 12)").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(path: Path) -> dict[str, dict]:
    """samples.jsonl -> {key: sample}."""
    with open(path, encoding="utf-8") as f:
        return {s["key"]: s for s in map(json.loads, filter(str.strip, f))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="samples.jsonl of the first run")
    ap.add_argument("b", type=Path, help="samples.jsonl of the second run")
    args = ap.parse_args(argv)
    for p in (args.a, args.b):
        if not p.is_file():
            ap.error(f"{p}: no such samples file")
    a, b = load(args.a), load(args.b)
    print("| retriever | found, A | found, B | same top-k ids |")
    print("|---|---|---|---|")
    for ret in sorted({s["cell"]["retriever"] for s in [*a.values(), *b.values()]}):
        ka = [k for k, s in a.items() if s["cell"]["retriever"] == ret]
        kb = [k for k, s in b.items() if s["cell"]["retriever"] == ret]
        both = [k for k in ka if k in b]
        same = sum([r["id"] for r in a[k]["retrieved"]] == [r["id"] for r in b[k]["retrieved"]] for k in both)
        found = [
            f"{sum(r[k]['n_found'] for k in ks)}/{sum(len(r[k]['needles']) for k in ks)}"
            for r, ks in ((a, ka), (b, kb))
        ]
        print(f"| {ret} | {found[0]} | {found[1]} | {same}/{len(both)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
