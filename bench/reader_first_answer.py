"""The reader's first answer after `warm(k)`, against its second: does warm-up compile everything?

    retro ask IDX "QUESTION" -k 5 --no-reader --json > ask.json     # any question and its evidence
    python bench/reader_first_answer.py ask.json [--ckpt DIR]

Loads the reader, calls `warm(k)` for the evidence's k, then answers the question from that evidence
twice and prints the wall time of each (ms) and of the warm-up. A first answer much slower than the
second means a step compiled inside it (the old warm-up left the one-token decode step out whenever the
reader abstained on its made-up questions: 14.3 s first answer on the 128K soak index, 2026-12-01).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> None:
    """CLI (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ask_json", help="`retro ask ... --json` output (its question and neighbours are used)")
    ap.add_argument("--ckpt", default=None, help="reader checkpoint (default: the shipped one)")
    args = ap.parse_args(argv)
    d = json.loads(Path(args.ask_json).read_text())
    question, texts = d["question"], [n["text"] for n in d["neighbours"]]
    from retro.reader import Reader

    reader = Reader.load(args.ckpt)
    t0 = time.perf_counter()
    reader.warm(len(texts))
    warm_s = time.perf_counter() - t0
    first = reader.answer(question, texts)
    second = reader.answer(question, texts)
    print(
        json.dumps(
            {
                "reader": reader.name,
                "k": len(texts),
                "warm_s": round(warm_s, 1),
                "first_ms": round(first.latency_ms, 1),
                "second_ms": round(second.latency_ms, 1),
                "answer": first.text,
            }
        )
    )


if __name__ == "__main__":
    main()
