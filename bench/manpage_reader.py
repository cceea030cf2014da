"""Man-page option questions answered by the reader, from stored cascade results, checkpoints side by side.

    python bench/manpage_reader.py --index data/manqa/idx \
        --samples data/manqa/after_dev/manpage_qa_samples.jsonl data/manqa/after_test/manpage_qa_samples.jsonl \
        --ckpt retro/assets/reader --ckpt data/reader/stage5 --out data/manqa/reader.json

`bench/manpage_qa.py run` ranks the 159 hand-written questions (bench/data/manpage_qa.jsonl) with the
cascade and stores, per question, its top 10 chunk ids and the gold chunks (manpage_qa_samples.jsonl).
Running the cascade again costs ~2.6 s a question on 2 cores; this reads those stored ids, takes the
neighbour texts from the same index, and runs `manpage_qa.answer_questions` (exact and contains match;
the cascade's top 10, and an oracle given only the gold chunk) for each checkpoint on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.manpage_qa import QUESTIONS, answer_questions  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """CLI (see the module doc)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", required=True, help="the index the samples were ranked on")
    ap.add_argument("--samples", nargs="+", required=True, help="manpage_qa_samples.jsonl files")
    ap.add_argument("--ckpt", action="append", default=None, help="reader checkpoint, repeatable")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from index import Index
    from retro.reader import Reader
    from util.runinfo import atomic_write_json, run_info

    for p in [Path(args.index) / "index.json", *map(Path, args.samples)]:
        if not p.is_file():
            raise SystemExit(f"{p}: no such file")
    questions = {q["id"]: q for q in map(json.loads, open(QUESTIONS))}
    idx = Index.open(args.index)
    rows, top = [], {}
    for path in args.samples:
        for line in open(path):
            s = json.loads(line)
            if "cascade_top" not in s:  # reader rows of an earlier run
                continue
            r = dict(questions[s["id"]])
            if s["gold"]:
                r["gold_text"] = idx.neighbour_text([s["gold"][0]])[0]
            top[r["question"]] = idx.neighbour_text(s["cascade_top"][:10])
            rows.append(r)
    results = {}
    for ckpt in args.ckpt or [None]:
        reader = Reader.load(ckpt)
        reader.warm(10)
        out = answer_questions(reader, rows, lambda q: top[q])
        results[reader.name] = out
        print(f"\n## {reader.name} ({ckpt or 'shipped'})\n\n| neighbours | split | n | exact | contains |")
        print("|---|---|---:|---:|---:|")
        for name in ("cascade", "oracle"):
            for split, t in out[name].items():
                print(f"| {name} | {split} | {t['n']} | {t['em']:.3f} | {t['contains']:.3f} |")
        abst = sum(s["oracle_abstained"] for s in out["samples"]) / max(1, len(out["samples"]))
        print(f"oracle abstained: {abst:.2f}", flush=True)
    if args.out:
        atomic_write_json(args.out, {"command": " ".join(sys.argv), "results": results, **run_info()})


if __name__ == "__main__":
    main()
