"""Cascade R@1 / R@10 on bench/cascade.py's questions, for one CascadeConfig (quick A/B of a knob).

    python bench/cascade_questions.py data/cascade/v3/idx_full data/cascade/v3/questions.jsonl w_final_bm25=0.3

bench/cascade.py writes the questions (one {"question", "full_chunk"} object per line, the chunk that
holds the answer) and builds the index; this script only runs `Cascade.search` over them, so two
settings can be compared side by side in minutes instead of the full benchmark's ~20.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path, help="index folder (bench/cascade.py's WORK/idx_full)")
    ap.add_argument("questions", type=Path, help="questions.jsonl from bench/cascade.py")
    ap.add_argument("overrides", nargs="*", help="CascadeConfig key=value")
    a = ap.parse_args(argv)
    if not a.questions.is_file():
        sys.exit(f"{a.questions}: no such file")
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from util.configs import resolve_config

    questions = []
    for n, line in enumerate(a.questions.read_text().splitlines(), start=1):
        rec = json.loads(line) if line.strip() else None
        if not isinstance(rec, dict) or "question" not in rec or "full_chunk" not in rec:
            sys.exit(f"{a.questions}:{n}: expected an object with 'question' and 'full_chunk'")
        questions.append(rec)
    cascade = Cascade(Index.open(a.index), resolve_config(CascadeConfig, overrides=a.overrides))
    cascade.warm()
    hits1 = hits10 = 0
    ms = []
    for q in questions:
        t = time.perf_counter()
        ids = cascade.search(q["question"], k=10).final_ids()
        ms.append((time.perf_counter() - t) * 1e3)
        hits1 += ids[:1] == [q["full_chunk"]]
        hits10 += q["full_chunk"] in ids
    n = len(questions)
    print(
        f"{' '.join(a.overrides) or 'defaults'}: {n} questions, R@1 {hits1 / n:.3f}, R@10 {hits10 / n:.3f}, "
        f"p50 {np.median(ms):.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
