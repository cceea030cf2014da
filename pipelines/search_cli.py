"""`retro search` and `retro ask`: the cascade from the command line, with the evidence of every stage.

    retro search IDX "query" [-k 10] [--hops N] [--json] [--set key=value ...] [--config FILE]
    retro ask IDX "question" [--json]
    retro ask IDX --questions Q.jsonl --out A.jsonl [--hops N] [--quiet]

Both print the typed result (pipelines/results.py): `search --json` is `SearchResult.to_dict()`,
`ask` writes `SearchResult.ask_dict(id)` per question, whose `answer` is the RETRO reader's
(pipelines/answer.py: text, abstained, citations, hops); `--no-reader` leaves it null. `--set key=value` (repeatable; or `key=value`
right after the query) sets CascadeConfig fields (e.g. `n2=24 fusion=rrf`); `--config FILE` reads
them from YAML. `k` is one field: `-k 5` and `--set k=5` are the same, and a conflict is an error.
The table's columns come from the one stage list, `pipelines.results.STAGES`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from index.corpus import json_line, replace_lone_surrogates
from pipelines.answer import ask, load_reader
from pipelines.cascade import Cascade
from pipelines.cascade_config import cascade_config
from pipelines.query import check_query_text
from pipelines.results import STAGES, SearchResult, StageSpec
from util.configs import config_to_dict
from util.ray_cluster import add_engine_args, check_engine
from util.runinfo import atomic_path, check_writable


def _cascade(args: argparse.Namespace) -> Cascade:
    """The cascade over the opened index, with everything a user can get wrong checked: the config,
    the index folder and k against its size. Opening reads the manifest and memory-maps the arrays; no
    model loads here (torch and MiniLM take 25-45 s to import), so a bad argument fails in a second."""
    from index import Index

    check_engine(args.engine, args.ray_address)
    overrides = list(args.overrides) + list(args.set or [])
    cfg = cascade_config(args.config, overrides, k=args.k, hops=getattr(args, "hops", None))
    cascade = Cascade(Index.open(args.index), cfg, quiet=getattr(args, "quiet", False))
    cascade.budgets()  # k <= 0 or larger than the index
    return cascade


def _on_engine(cascade: Cascade, args: argparse.Namespace) -> Cascade:
    """The checked cascade on the chosen engine: itself (local), or over the same index with its
    shards held by Ray actors (pipelines/ray_search.py); started only once every argument is checked."""
    if args.engine != "ray":
        return cascade
    from pipelines.ray_search import RayIndex

    index = RayIndex.fan_out(cascade.index, address=args.ray_address)
    return Cascade(index, cascade.cfg, quiet=cascade.quiet)


def print_table(result: SearchResult, out=None, stages: tuple[StageSpec, ...] = STAGES) -> None:
    """Ranked neighbours as a markdown table (one column per stage with `column`), then the latency.
    A row that collapsed copies of its text says so after its doc id: "grep (+2 same)"."""
    out = sys.stdout if out is None else out
    t = result.truncation
    if t is not None and t.model == "query":
        print(f"note: query cut to its first {t.max_tokens} of {t.query_tokens} words", file=out)
    elif t is not None:
        print(
            f"note: query truncated to {t.max_tokens} of {t.query_tokens} tokens for the dense model",
            file=out,
        )
    names = [s.name for s in stages if s.column and s.ranks]
    print("| # | hop | doc | tokens | chars | " + " | ".join(names) + " | text |", file=out)
    print("|---" * (6 + len(names)) + "|", file=out)
    for n in result.neighbours:
        cells = []
        for name in names:
            ev = n.stages.get(name)
            cells.append("-" if ev is None or ev.rank is None else f"#{ev.rank} {ev.score:.3g}")
        text = " ".join(n.text.split())[:100].replace("|", "\\|")
        doc = f"{n.doc_id} (+{len(n.duplicates)} same)" if n.duplicates else n.doc_id
        print(
            f"| {n.rank} | {n.hop} | {doc} | {n.token_start}+{64} | {n.char_start}-{n.char_end} | "
            + " | ".join(cells)
            + f" | {text} |",
            file=out,
        )
    lat = ", ".join(f"{k} {v:.1f}" for k, v in result.latency_ms.items())
    b = result.budgets
    sizes = f"; N1={b.n1}, N2={b.n2}" if b is not None else ""
    print(f"\nlatency ms: {lat}  (medium: {result.medium_mode}{sizes})", file=out)


def print_answer(result: SearchResult, out=None) -> None:
    """The answer line(s) above the evidence table: the answer and where it was read, or why none."""
    out = sys.stdout if out is None else out
    a = result.answer
    if a is None:
        print("answer: - (evidence only, --no-reader)", file=out)
        return
    cites = ", ".join(f"#{c.rank} chars {c.char_start}-{c.char_end}" for c in a.citations) or "-"
    if a.abstained:
        print(
            f"answer: none: the evidence does not hold it (reader abstained; {a.latency_ms:.0f} ms)", file=out
        )
    else:
        print(f"answer: {a.text}\ncited: {cites}  (reader {a.mode}, {a.latency_ms:.0f} ms)", file=out)
    if len(a.hops) > 1:
        for h in a.hops:
            print(f"hop {h.hop}: {h.query!r} -> {h.answer or 'abstained'}", file=out)
    print(file=out)


def _search(args: argparse.Namespace) -> int:
    check_query_text(args.query)
    cascade = _on_engine(_cascade(args), args)
    cascade.warm()  # lazy loads (BM25, FAISS, MiniLM) stay out of the reported per-stage latency
    result = cascade.search(args.query)
    if args.json:
        print(result.to_json())
    else:
        print_table(result)
    return 0


def read_questions(path: str) -> tuple[list[tuple[object, str]], list[str]]:
    """Q.jsonl -> ([(id, question)], ["file:line: problem"]) ; bad lines are skipped, not fatal.

    Lines end at "\n" only (as in a corpus .jsonl), so a stray "\r" cannot split a record or shift
    the line numbers; a line that is not UTF-8, or whose question escapes a lone surrogate (no UTF-8
    output can hold it), is a bad line, not a question with replaced characters."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{path}: is a folder, not a questions file (jsonl)")
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such questions file")
    good, bad = [], []
    with open(p, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff" if n == 1 else "")  # a byte order mark
            except UnicodeDecodeError as e:
                bad.append(f"{path}:{n}: not valid UTF-8 (byte {e.start + 1} of the line)")
                continue
            if not line.strip():
                continue
            try:
                obj = json_line(line)
            except ValueError as e:
                bad.append(f"{path}:{n}: not valid JSON ({e})")
                continue
            if not isinstance(obj, dict):
                bad.append(f"{path}:{n}: expected a JSON object with id and question")
            elif "id" not in obj:
                bad.append(f"{path}:{n}: missing id")
            elif not isinstance(obj.get("question"), str) or not obj["question"].strip():
                bad.append(f"{path}:{n}: missing or empty question")
            elif replace_lone_surrogates(obj["question"])[1]:
                bad.append(f"{path}:{n}: the question escapes a lone surrogate (not valid Unicode)")
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
    # every argument is checked before a model loads (MiniLM and the reader take 25-45 s)
    if args.question is not None:
        check_query_text(args.question, "question")
    else:
        questions, bad = read_questions(args.questions)
        check_writable(args.out, "--out")
    cascade = _cascade(args)
    reader = None if args.no_reader else load_reader(args.reader)  # a bad --reader fails before jax loads
    cascade = _on_engine(cascade, args)
    cascade.warm()  # lazy loads (BM25, FAISS, MiniLM) stay out of the reported per-stage latency
    if reader is not None:
        reader.warm(cascade.cfg.k)  # compilation stays out of the reported reader latency
    hops = cascade.cfg.hops

    def answer(question: str) -> SearchResult:
        check_query_text(question, "question")
        if reader is None:  # evidence only: the cascade's own hops (raw text of the best new chunk)
            return cascade.search(question)
        return ask(cascade, reader, question, hops=hops, mode=args.mode)

    if args.question is not None:
        result = answer(args.question)
        if args.json:
            print(result.to_json(None, ask=True))
        else:
            print_answer(result)
            print_table(result)
        return 0
    for msg in bad:
        print(f"skipped {msg}", file=sys.stderr)
    return _ask_batch(args, cascade, answer, questions, bad)


def _ask_batch(args: argparse.Namespace, cascade: Cascade, answer, questions: list, bad: list[str]) -> int:
    """Answer every question into --out, one line each as it is answered. A question that cannot be
    searched (no searchable words) gets an `error` line and the others go on; an interrupt or a failure
    stops the batch but keeps the lines already written (the file is renamed into place either way)."""
    from tqdm import tqdm

    out = Path(args.out)
    done, errors, stopped = 0, 0, None
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        kept = 0  # bytes of whole lines written: an interrupt mid-line is cut back to here
        try:
            for qid, question in tqdm(questions, desc="ask", unit="q", disable=args.quiet):
                failed = False
                try:
                    line = answer(question).to_json(qid, ask=True)
                except ValueError as e:  # this question's own problem: say so in its line, go on
                    line = json.dumps(
                        {"id": qid, "question": question, "answer": None, "error": str(e)}, ensure_ascii=False
                    )
                    failed = True
                f.write(line + "\n")
                f.flush()
                kept, done, errors = f.tell(), done + 1, errors + failed
        except BaseException as e:  # interrupted or failed: keep the answered lines, then stop
            if not done:
                raise  # nothing answered: an earlier --out stays as it was
            stopped = e
            f.truncate(kept)
    meta = {
        "questions": str(args.questions),
        "answered": done - errors,
        "errors": errors,
        "unanswered": len(questions) - done,
        "skipped": len(bad),
        "skipped_lines": bad[:100],
        "config": config_to_dict(cascade.cfg),
        "index": str(args.index),
    }
    from util.runinfo import atomic_write_json, run_info

    meta["run"] = run_info()
    atomic_write_json(out.with_name(out.name + ".meta.json"), meta)
    if stopped is not None:
        print(f"stopped after {done} of {len(questions)} questions; {out} holds those", file=sys.stderr)
        raise stopped
    if not args.quiet:
        print(
            f"answered {done - errors} questions -> {out}; {errors} could not be searched (see their "
            f"error field); skipped {len(bad)} bad line(s)",
            file=sys.stderr,
        )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", help="index folder built by `retro index build`")
    p.add_argument("-k", type=int, default=None, help="neighbours per hop (the config's k, default 10)")
    p.add_argument(
        "--hops",
        type=int,
        default=None,
        help="hops (ask: each reads the evidence and searches again with the bridge it found; "
        "search / --no-reader: with the text of the best new chunk); stops early when nothing new comes "
        "(default: the config's hops, 1)",
    )
    p.add_argument("--config", help="YAML file of CascadeConfig fields (default: none, the built-in ones)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--set", action="append", metavar="key=value", help="CascadeConfig override (repeatable)")
    add_engine_args(p, "the shards' query work runs in Ray actors, the merge here")


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
        "ask", help="answer questions with the RETRO reader: the answer, its citations and the evidence"
    )
    _common(p)
    p.add_argument("--reader", default=None, help="reader checkpoint folder (default: the shipped one)")
    p.add_argument("--no-reader", action="store_true", help="evidence only: no answer is generated")
    p.add_argument(
        "--mode",
        choices=("constrained", "free"),
        default=None,
        help="reader decoding (default: the reader's)",
    )
    p.add_argument("question", nargs="?", help="one question (or use --questions)")
    p.add_argument(
        "--questions",
        help='jsonl file, one {"id", "question"} per line (default: none, ask the one question)',
    )
    p.add_argument("--out", help="output jsonl, one answer object per question (required with --questions)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="CascadeConfig overrides")
    p.set_defaults(func=_ask)
