"""`retro search` and `retro ask`: the cascade from the command line, with the evidence of every stage.

    retro search IDX "query" [-k 10] [--hops N] [--json] [key=value ...]
    retro ask IDX "question" [--json]
    retro ask IDX --questions Q.jsonl --out A.jsonl [--hops N] [--quiet]

`ask` writes one JSON object per question (see `ask_record`); `answer` stays null until the RETRO
reader exists: no string is ever invented in its place. `key=value` overrides set CascadeConfig
fields (e.g. `n2=24 fusion=rrf`; placed right after the query, or anywhere as `--set n2=24`);
`--config FILE` reads them from YAML.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from pipelines.cascade import Cascade, SearchResult
from pipelines.cascade_config import CascadeConfig
from util.configs import config_to_dict, resolve_config


def _open(args: argparse.Namespace) -> Cascade:
    """Open the index and build the cascade from --config / overrides (ValueError on bad input)."""
    from index import Index

    overrides = list(args.overrides) + list(args.set or [])
    if getattr(args, "hops", None) is not None:
        overrides.append(f"hops={args.hops}")
    cfg = resolve_config(CascadeConfig, args.config, overrides)
    cascade = Cascade(Index.open(args.index), cfg)
    cascade.warm()  # lazy loads (BM25, FAISS, MiniLM) stay out of the reported per-stage latency
    return cascade


def ask_record(qid, question: str, result: SearchResult) -> dict:
    """The JSON object of one answered question (one line of `ask --out`).

    {"id", "question", "answer": null, "neighbours": [{"rank", "hop", "chunk", "text", "doc_id", "doc_index",
     "source", "line", "token_start", "char_start", "char_end", "stages": {stage: {"score", "rank"}}}],
     "latency_ms": {"cheap", "query_encode", "medium", "expensive", "total"}, "truncated": null | {...},
     "hops": n, "budgets": {"k", "n1", "n2", "depth"}, "medium_mode": "stored" | "ondemand" | "off"}
    """
    b = result.budgets
    return {
        "id": qid,
        "question": question,
        "answer": None,
        "neighbours": result.neighbours,
        "latency_ms": result.latency_ms,
        "truncated": result.truncation,
        "hops": len(result.hops),
        "budgets": {"k": b.k, "n1": b.n1, "n2": b.n2, "depth": b.depth},
        "medium_mode": result.medium_mode,
    }


def _print_table(result: SearchResult, out=sys.stdout) -> None:
    """Ranked neighbours as a markdown table, then the per-stage latency."""
    if result.truncation:
        t = result.truncation
        print(
            f"note: query truncated to {t['max_tokens']} of {t['query_tokens']} tokens for the dense model",
            file=out,
        )
    print("| # | hop | doc | tokens | chars | bm25 | static | cheap | medium | expensive | text |", file=out)
    print("|---|---|---|---|---|---|---|---|---|---|---|", file=out)
    for n in result.neighbours:
        cells = []
        for name in ("bm25", "static", "cheap", "medium", "expensive"):
            s = n["stages"][name]
            cells.append("-" if s["rank"] is None else f"#{s['rank']} {s['score']:.3g}")
        text = " ".join(n["text"].split())[:100].replace("|", "\\|")
        print(
            f"| {n['rank']} | {n['hop']} | {n['doc_id']} | {n['token_start']}+{64} | {n['char_start']}-{n['char_end']} | "
            + " | ".join(cells)
            + f" | {text} |",
            file=out,
        )
    lat = ", ".join(f"{k} {v:.1f}" for k, v in result.latency_ms.items())
    print(
        f"\nlatency ms: {lat}  (medium: {result.medium_mode}; N1={result.budgets.n1}, N2={result.budgets.n2})",
        file=out,
    )


def _search(args: argparse.Namespace) -> int:
    cascade = _open(args)
    result = cascade.search(args.query, k=args.k)
    if args.json:
        rec = ask_record(None, args.query, result)
        rec.pop("id")
        rec.pop("answer")
        rec["query"] = rec.pop("question")
        print(json.dumps(rec, ensure_ascii=False))
    else:
        _print_table(result)
    return 0


def read_questions(path: str) -> tuple[list[tuple[object, str]], list[str]]:
    """Q.jsonl -> ([(id, question)], ["file:line: problem"]) ; bad lines are skipped, not fatal."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such questions file")
    good, bad = [], []
    with open(p, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append(f"{path}:{n}: not valid JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                bad.append(f"{path}:{n}: expected a JSON object with id and question")
            elif "id" not in obj:
                bad.append(f"{path}:{n}: missing id")
            elif not isinstance(obj.get("question"), str) or not obj["question"].strip():
                bad.append(f"{path}:{n}: missing or empty question")
            else:
                good.append((obj["id"], obj["question"]))
    return good, bad


def _ask(args: argparse.Namespace) -> int:
    if args.questions is not None and args.question is not None and re.match(r"^\w+=", args.question):
        args.overrides = [args.question, *args.overrides]  # `ask IDX --questions Q key=value`: not a question
        args.question = None
    if (args.question is None) == (args.questions is None):
        raise ValueError("give either a question or --questions Q.jsonl (with --out A.jsonl)")
    if args.questions is not None and not args.out:
        raise ValueError("--questions needs --out A.jsonl")
    if args.question is not None and not args.question.strip():
        raise ValueError("question is empty")
    cascade = _open(args)
    if args.question is not None:
        result = cascade.search(args.question, k=args.k)
        if args.json:
            print(json.dumps(ask_record(None, args.question, result), ensure_ascii=False))
        else:
            print("answer: null (no reader yet: the RETRO reader is not wired in; evidence below)")
            _print_table(result)
        return 0
    questions, bad = read_questions(args.questions)
    for msg in bad:
        print(f"skipped {msg}", file=sys.stderr)
    cascade.budgets(args.k)  # fail on a bad k before any work
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    from tqdm import tqdm

    with open(tmp, "w", encoding="utf-8") as f:
        for qid, question in tqdm(questions, desc="ask", unit="q", disable=args.quiet):
            rec = ask_record(qid, question, cascade.search(question, k=args.k))
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    meta = {
        "questions": str(args.questions),
        "answered": len(questions),
        "skipped": len(bad),
        "skipped_lines": bad[:100],
        "config": config_to_dict(cascade.cfg),
        "index": str(args.index),
    }
    from util.runinfo import atomic_write_json, run_info

    meta["run"] = run_info()
    atomic_write_json(out.with_name(out.name + ".meta.json"), meta)
    if not args.quiet:
        print(
            f"answered {len(questions)} questions -> {out}; skipped {len(bad)} bad line(s)", file=sys.stderr
        )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="index folder built by `retro index build`")
    p.add_argument("-k", type=int, default=10, help="neighbours per hop (default 10)")
    p.add_argument(
        "--hops", type=int, default=None, help="retrieval hops; stops early when a hop finds nothing new"
    )
    p.add_argument("--config", help="YAML file of CascadeConfig fields")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--set", action="append", metavar="key=value", help="CascadeConfig override (repeatable)")


def register(subparsers) -> None:
    """Add `search` and `ask`."""
    p = subparsers.add_parser(
        "search", help="ranked chunks for a query, with each cascade stage's score and rank"
    )
    _common(p)
    p.add_argument("query", help="query text")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="CascadeConfig overrides (e.g. n2=24)")
    p.set_defaults(func=_search)
    p = subparsers.add_parser(
        "ask", help="answer questions with evidence (answer is null until the reader lands)"
    )
    _common(p)
    p.add_argument("question", nargs="?", help="one question (or use --questions)")
    p.add_argument("--questions", help='jsonl file, one {"id", "question"} per line')
    p.add_argument("--out", help="output jsonl, one answer object per question")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="CascadeConfig overrides")
    p.set_defaults(func=_ask)
