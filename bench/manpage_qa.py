"""Man-page option questions on real text: retrieval recall of the gold chunk, and a reader hook.

    python bench/manpage_qa.py run  --corpus data/manqa/real.jsonl --index data/manqa/idx --out data/manqa
    python bench/manpage_qa.py make --corpus data/manqa/real.jsonl        # rebuild the question file

The questions (bench/data/manpage_qa.jsonl) are hand-written, one per option of a real man page of
the corpus `/work/shared/tools/realtext-corpus data/manqa/real.jsonl --tokens 3e6 --seed 0` writes. Each
asks for the option in other words than the page's description (at most one content word shared
with the evidence) and records every accepted spelling of the option as `answers`, the `evidence`
(an exact substring of the corpus text: the option line and its description's first sentence), the
`doc_id` and a `split` (dev / test, by a seeded hash of the id; pick settings on dev, report test).
The hand-written part lives in bench/data/manpage_qa_src.txt (doc id | the option line's start |
question [| answers]); `make` cuts the evidence from the corpus and writes the jsonl.

`run` builds (or reuses) an index of the corpus, marks each question's gold chunks (chunks whose
neighbour text, chunk + continuation, holds the evidence; else the option's answer line), and
reports recall@1/@10 of a gold chunk for BM25 (`Index.search_bm25`) and the cascade
(`Cascade.search`), per split: a markdown table on stdout, WORK/manpage_qa_results.json (command,
date, git hash) and WORK/manpage_qa_samples.jsonl. Then, when the reader exists (`retro.reader`), it
runs `answer_questions` (exact and contains match, cascade top-10 and gold-chunk oracle).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "data" / "manpage_qa.jsonl"
SOURCE = ROOT / "bench" / "data" / "manpage_qa_src.txt"
SPLIT_SEED = 0
KS = (1, 10)
MAX_EVIDENCE_CHARS = 260  # of the description after the option line (a neighbour is 128 tokens)
MIN_DESCRIPTION_CHARS = 40  # the evidence's description runs at least to the first sentence end past this

# -- text helpers (no corpus, no index: the tests use them) ------------------------------------------

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each else even ever every few for
    from further get gets got had has have having he her here hers him his how i if in into is it its
    itself just let lets like made make makes me might more most much must my no nor not now of off on
    once one only or other our out over own per rather same she should so some such than that the their
    them then there these they this those through thus to too under until up upon us use used uses using
    very via want was way we were what when where whether which while who whom why will with without
    would you your yours instead option options flag flags command tell tells way ways""".split()
)


def stem(word: str) -> str:
    """A crude suffix stripper, the same on both sides of a comparison (files/file, archived/archive)."""
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suf in ("ing", "ed", "es", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            break
    return w[:-1] if w.endswith("e") and len(w) > 3 else w


def content_words(text: str, drop: tuple[str, ...] = ()) -> set[str]:
    """Stems of the words of `text` that carry meaning (3+ letters, not stop words, not in `drop`)."""
    dropped = {stem(d) for d in drop}
    out = set()
    for w in re.findall(r"[A-Za-z][A-Za-z0-9]+", text):
        w = w.lower()
        if len(w) < 3 or w in STOPWORDS:
            continue
        s = stem(w)
        if s not in dropped:
            out.add(s)
    return out


def shared_words(question: str, evidence: str, command: str) -> set[str]:
    """Content words a question shares with its evidence (the command's own name does not count)."""
    drop = tuple(re.findall(r"[A-Za-z0-9]+", command))
    return content_words(question, drop) & content_words(evidence, drop)


def split_of(qid: str, seed: int = SPLIT_SEED) -> str:
    """dev or test, by a seeded hash of the id (stable across runs and machines)."""
    return "dev" if hashlib.sha256(f"{seed}:{qid}".encode()).digest()[0] % 2 == 0 else "test"


def squash(text: str) -> str:
    """Whitespace runs to one space (the index's tokenizer does not keep man-page layout)."""
    return " ".join(text.split())


_END_PUNCT = "\"'`.,;:!?()[]{}<>"


def normalize_answer(text: str) -> str:
    """An answer as exact match compares it: outer whitespace and punctuation off (dashes stay)."""
    return text.strip().strip(_END_PUNCT).strip()


def exact_match(prediction: str | None, answers: list[str]) -> bool:
    """The prediction, stripped, equals one accepted spelling; or it lists spellings of the one option
    ("-h, --dereference", as the option line writes it and as a multi-part reader answer joins parts),
    each of them accepted."""
    accepted = {normalize_answer(a) for a in answers}
    p = normalize_answer(prediction or "")
    if p in accepted:
        return True
    parts = [normalize_answer(x) for x in re.split(r",\s*|\s+or\s+", p)]
    return len(parts) > 1 and all(x in accepted for x in parts)


def contains_match(prediction: str | None, answers: list[str]) -> bool:
    """One accepted spelling occurs in the prediction as a whole option (not inside a longer one)."""
    prediction = prediction or ""
    for a in answers:
        a = normalize_answer(a)
        if re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", prediction):
            return True
    return False


# -- make: hand-written questions + evidence cut from the corpus -------------------------------------

_OPT = re.compile(r"^(-{1,2}[A-Za-z0-9?#][A-Za-z0-9_.-]*|\+[A-Za-z]\w*)")


def option_line(text: str, anchor: str) -> tuple[int, int]:
    """(start, end) in `text` of the option line that begins with `anchor` (after its indentation).

    A line that the anchor ends, or that goes on after a gap of 2+ spaces, is preferred over running
    text that happens to start with the option (a wrapped sentence like "--no-pager option and ...")."""
    found = list(re.finditer(rf"(?m)^[ \t]+({re.escape(anchor)})(.*)$", text))
    if not found:
        raise ValueError(f"option line {anchor!r} not found")
    whole = [m for m in found if not m.group(2).strip() or re.match(r"\s{2,}", m.group(2))]
    m = (whole or found)[0]
    return m.start(1), m.end(2)


def answers_of(header: str) -> list[str]:
    """Every spelling of the option a header names: '-f, --file=ARCHIVE' -> -f, --file, --file=ARCHIVE."""
    out: list[str] = []
    for item in re.split(r",\s+|\s+or\s+", header):
        item = item.strip()
        m = _OPT.match(item)
        if not m:
            continue
        name = m.group(1).rstrip(".")
        if len(name) > 2 and name[1:].isupper() and name.startswith("-") and not name.startswith("--"):
            continue  # a placeholder such as -NUM
        for s in (name, item.split()[0].rstrip(",") if "=" in item else None):
            if s and s not in out and s.startswith(("-", "+")) and "[" not in s:
                out.append(s)
    return out


def cut_evidence(text: str, anchor: str) -> tuple[str, str]:
    """(evidence, header): the option line from `anchor` through its description's first sentence.

    The header is the option part of the line (the line itself, or what comes before a run of 2+
    spaces when the description starts on the same line). The description is every following line
    indented deeper than the option line (blank lines allowed); the evidence ends at its first
    sentence end past MIN_DESCRIPTION_CHARS, at its end, or near MAX_EVIDENCE_CHARS at a line break.
    """
    start, end = option_line(text, anchor)
    indent = start - (text.rfind("\n", 0, start) + 1)
    line = text[start:end]
    inline = re.search(r"\S(\s{2,})\S", line[len(anchor) - 1 :])
    header = line[: len(anchor) - 1 + inline.start(1)] if inline else line
    body_start = start + len(header)
    pos, body_end = end, end  # the description runs on while lines are indented deeper
    while pos < len(text):
        nxt = text.find("\n", pos + 1)
        nxt = len(text) if nxt < 0 else nxt
        ln = text[pos + 1 : nxt]
        if ln.strip():
            if len(ln) - len(ln.lstrip()) <= indent:
                break
            body_end = nxt
        pos = nxt
    body = text[body_start:body_end]
    lead = len(body) - len(body.lstrip())
    cut = None
    for m in re.finditer(r"(?<!\.)\.(?=\s|$)", body):
        if m.end() - lead >= MIN_DESCRIPTION_CHARS:
            cut = m.end()
            break
    if cut is None or cut - lead > MAX_EVIDENCE_CHARS:
        cut = len(body.rstrip())
        if cut - lead > MAX_EVIDENCE_CHARS:
            cut = body.rfind("\n", 0, lead + MAX_EVIDENCE_CHARS)
            cut = cut if cut > lead else body.rfind(" ", 0, lead + MAX_EVIDENCE_CHARS)
    evidence = text[start : body_start + cut].rstrip()
    return evidence, header.strip()


def command_of(doc_id: str) -> str:
    """'git-reset.1.gz' -> 'git reset'; 'tar.1.gz' -> 'tar'."""
    name = re.sub(r"\.\d\w*(\.gz)?$", "", doc_id)
    if name.startswith("git-"):
        return "git " + name[4:]
    return name


def read_source(path: Path) -> list[dict]:
    """bench/data/manpage_qa_src.txt: `doc_id | option line start | question [| answers, space-separated]`."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) not in (3, 4):
            raise ValueError(f"{path}:{n}: expected 3 or 4 ' | '-separated fields, got {len(parts)}")
        row = {"doc_id": parts[0], "anchor": parts[1], "question": parts[2]}
        if len(parts) == 4:
            row["answers"] = parts[3].split()
        rows.append(row)
    return rows


def load_docs(corpus: Path, wanted: set[str] | None = None) -> dict[str, str]:
    docs = {}
    with open(corpus) as f:
        for line in f:
            d = json.loads(line)
            if wanted is None or d["id"] in wanted:
                docs[d["id"]] = d["text"]
    return docs


def make(corpus: Path, source: Path, out: Path) -> list[dict]:
    """Questions from the source file with evidence cut from the corpus; raises on the first bad row."""
    src = read_source(source)
    docs = load_docs(corpus, {r["doc_id"] for r in src})
    rows, problems = [], []
    for r in src:
        where = f"{r['doc_id']} {r['anchor']!r}"
        if r["doc_id"] not in docs:
            problems.append(f"{where}: document not in {corpus}")
            continue
        try:
            evidence, header = cut_evidence(docs[r["doc_id"]], r["anchor"])
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        answers = r.get("answers") or answers_of(header)
        command = command_of(r["doc_id"])
        primary = next((a for a in answers if a.startswith("--")), answers[0] if answers else "?")
        qid = f"{command.replace(' ', '-')}:{primary.split('=')[0]}"
        row = {
            "id": qid,
            "question": r["question"],
            "answers": answers,
            "command": command,
            "evidence": evidence,
            "doc_id": r["doc_id"],
            "split": split_of(qid),
        }
        problems += [f"{where}: {p}" for p in check_row(row)]
        if evidence not in docs[r["doc_id"]]:
            problems.append(f"{where}: evidence is not a substring of the document")
        rows.append(row)
    ids = [r["id"] for r in rows]
    problems += [f"duplicate id {i}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise SystemExit("manpage_qa make:\n  " + "\n  ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def check_row(row: dict) -> list[str]:
    """What is wrong with one question record (empty when nothing)."""
    problems = []
    for key in ("id", "question", "answers", "command", "evidence", "doc_id", "split"):
        if not row.get(key):
            problems.append(f"missing {key}")
    if problems:
        return problems
    if row["split"] not in ("dev", "test"):
        problems.append(f"split {row['split']!r}")
    for a in row["answers"]:
        if a not in row["evidence"]:
            problems.append(f"answer {a!r} not in the evidence")
    shared = shared_words(row["question"], row["evidence"], row["command"])
    if len(shared) > 1:
        problems.append(f"question shares {len(shared)} content words with the evidence: {sorted(shared)}")
    for a in row["answers"]:
        if contains_match(row["question"], [a]):
            problems.append(f"question gives its answer away ({a!r})")
    if not row["question"].rstrip().endswith("?"):
        problems.append("question does not end with '?'")
    return problems


# -- run: retrieval recall, and the reader hook ------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gold_chunks(idx, rows: list[dict]) -> dict[str, dict]:
    """Per question: {"chunks": gold chunk ids, "by": "evidence" | "answer_line" | "none"}.

    A gold chunk's neighbour text (chunk + continuation, whitespace squashed) holds the whole evidence;
    when no neighbour does, it holds the evidence's first line (the option line with its answers).
    Only chunks of the documents whose text holds the evidence (`_also_docs`, from `docs_holding`)
    are looked at, so a copy of a page under another name (dir / vdir) counts as gold too.
    """
    import numpy as np

    by_doc: dict[str, list[int]] = {}
    for s in range(0, idx.num_chunks, 50_000):
        for p in idx.provenance(np.arange(s, min(s + 50_000, idx.num_chunks))):
            by_doc.setdefault(p["doc_id"], []).append(p["chunk"])
    texts: dict[int, str] = {}

    def neighbours(doc: str) -> list[tuple[int, str]]:
        ids = by_doc.get(doc, [])
        missing = [i for i in ids if i not in texts]
        if missing:
            for i, t in zip(missing, idx.neighbour_text(missing), strict=True):
                texts[i] = squash(t)
        return [(i, texts[i]) for i in ids]

    out = {}
    for r in rows:
        ev = squash(r["evidence"])
        first = squash(r["evidence"].split("\n")[0])
        docs = list(dict.fromkeys([r["doc_id"], *r.get("_also_docs", [])]))
        gold, by = [], "evidence"
        for d in docs:
            gold += [i for i, t in neighbours(d) if ev in t]
        if not gold:
            by = "answer_line"
            for d in docs:
                gold += [i for i, t in neighbours(d) if first in t]
        out[r["id"]] = {"chunks": sorted(set(gold)), "by": by if gold else "none"}
    return out


def docs_holding(corpus: Path, rows: list[dict]) -> None:
    """Set `_also_docs` on each row: every corpus document whose text holds its evidence verbatim.
    Raises when a row's evidence is not in its own document (the question file and corpus disagree)."""
    for r in rows:
        r["_also_docs"] = []
    with open(corpus) as f:
        for line in f:
            d = json.loads(line)
            for r in rows:
                if r["evidence"] in d["text"]:
                    r["_also_docs"].append(d["id"])
    bad = [r["id"] for r in rows if r["doc_id"] not in r["_also_docs"]]
    if bad:
        raise SystemExit(f"{corpus}: evidence of {len(bad)} questions is not in their document: {bad[:10]}")


def recall(ranked: list[int], gold: list[int], k: int) -> float:
    return float(bool(set(ranked[:k]) & set(gold)))


# ---- the reader hook: wire a reader here once retro.reader exists ---------------------------------


def answer_questions(reader, rows: list[dict], neighbours_of) -> dict:
    """Exact / contains match of a reader's answers, from the cascade's top 10 and from the gold chunk.

    reader: any object with `answer(question, neighbour_texts) -> obj with .text` (.text None = abstained;
    retro.reader.Reader on the reader branch fits).
    rows: question records, each with "gold_text" (the gold neighbour text) added by `run`.
    neighbours_of: question -> list of neighbour texts (the cascade's top 10, best first).
    Returns {"cascade": {...}, "oracle": {...}, "samples": [...]}, the first two per split and overall.
    """
    settings = {
        "cascade": lambda r: neighbours_of(r["question"]),
        "oracle": lambda r: [r["gold_text"]] if r.get("gold_text") else [],
    }
    samples = []
    for r in rows:
        s = {"id": r["id"], "split": r["split"]}
        for name, get in settings.items():
            texts = get(r)
            ans = reader.answer(r["question"], texts) if texts else None
            pred = (ans.text if ans is not None else None) or ""  # None: the reader abstained
            s[f"{name}_answer"] = pred
            s[f"{name}_abstained"] = bool(ans is None or getattr(ans, "abstained", not pred))
            s[f"{name}_em"] = exact_match(pred, r["answers"])
            s[f"{name}_contains"] = contains_match(pred, r["answers"])
        samples.append(s)
    out: dict = {"samples": samples}
    for name in settings:
        table = {}
        for split in ("dev", "test", "all"):
            sel = [s for s in samples if split == "all" or s["split"] == split]
            n = max(len(sel), 1)
            table[split] = {
                "n": len(sel),
                "em": sum(s[f"{name}_em"] for s in sel) / n,
                "contains": sum(s[f"{name}_contains"] for s in sel) / n,
            }
        out[name] = table
    return out


def load_reader():
    """The project's reader, or None (with the reason) when this checkout has none yet."""
    try:
        import retro.reader as rr  # noqa: F401
    except ImportError as e:
        return None, f"retro.reader is not in this checkout ({e})"
    for name in ("Reader", "load_reader"):
        if hasattr(rr, name):
            try:
                obj = getattr(rr, name)
                return (obj.load() if hasattr(obj, "load") else obj()), ""
            except Exception as e:  # a reader that cannot load here is reported, not fatal
                return None, f"retro.reader.{name} did not load: {e}"
    return None, "retro.reader has no Reader / load_reader"


def run(args) -> dict:
    import numpy as np

    from index import Index
    from index.build import BuildConfig, build_index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from util.configs import config_to_dict, resolve_config
    from util.runinfo import atomic_write_json, run_info

    rows = [json.loads(line) for line in open(args.questions)]
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    if args.limit:
        rows = rows[: args.limit]
    idx_path = Path(args.index)
    if not (idx_path / "index.json").is_file():
        log(f"building the index {idx_path} from {args.corpus}")
        build_index(args.corpus, idx_path, BuildConfig(), quiet=args.quiet)
    idx = Index.open(idx_path)
    log(f"index: {idx.num_docs} docs, {idx.num_chunks} chunks, {idx.num_tokens} tokens")

    docs_holding(Path(args.corpus), rows)
    gold = gold_chunks(idx, rows)
    for r in rows:
        r["gold"] = gold[r["id"]]
        if r["gold"]["chunks"]:
            r["gold_text"] = idx.neighbour_text([r["gold"]["chunks"][0]])[0]
    no_gold = [r["id"] for r in rows if not r["gold"]["chunks"]]
    if no_gold:
        log(f"{len(no_gold)} questions have no gold chunk: {no_gold}")
    by_line = sum(r["gold"]["by"] == "answer_line" for r in rows)
    log(f"gold chunks: by evidence {len(rows) - by_line - len(no_gold)}, by answer line {by_line}")

    cfg = resolve_config(CascadeConfig, None, args.cascade)
    cascade = Cascade(idx, cfg)
    samples = []
    top_texts: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for n, r in enumerate(rows, start=1):
        bm_ids, _ = idx.search_bm25(r["question"], k=max(KS))
        t = time.perf_counter()
        res = cascade.search(r["question"], k=max(KS))
        cas_ms = (time.perf_counter() - t) * 1e3
        cas_ids = [nb.chunk for nb in res.neighbours]
        top_texts[r["question"]] = [nb.text for nb in res.neighbours[: max(KS)]]
        g = r["gold"]["chunks"]
        s = {
            "id": r["id"],
            "split": r["split"],
            "command": r["command"],
            "question": r["question"],
            "gold": g,
            "gold_by": r["gold"]["by"],
            "bm25_top": [int(i) for i in bm_ids],
            "cascade_top": cas_ids,
            "cascade_ms": round(cas_ms, 1),
        }
        for k in KS:
            s[f"bm25_r@{k}"] = recall(s["bm25_top"], g, k)
            s[f"cascade_r@{k}"] = recall(cas_ids, g, k)
        # a diagnostic: did the list reach the right man page at all (any chunk of it)?
        pages = set(r["_also_docs"])
        for m, top in (("bm25", s["bm25_top"]), ("cascade", cas_ids)):
            docs = [p["doc_id"] for p in idx.provenance(top[: max(KS)])] if top else []
            s[f"{m}_page@{max(KS)}"] = float(bool(pages & set(docs)))
        samples.append(s)
        if not args.quiet and (n % 10 == 0 or n == len(rows)):
            rate = n / (time.perf_counter() - t0)
            log(f"{n}/{len(rows)} questions ({rate:.2f}/s)")

    table = {}
    for split in ("dev", "test", "all"):
        sel = [s for s in samples if split == "all" or s["split"] == split]
        if not sel:
            continue
        n = len(sel)
        table[split] = {"n": len(sel)}
        for m in ("bm25", "cascade"):
            for key in [f"{m}_r@{k}" for k in KS] + [f"{m}_page@{max(KS)}"]:
                table[split][key] = round(sum(s[key] for s in sel) / n, 3)
    lat = np.array([s["cascade_ms"] for s in samples]) if samples else np.zeros(1)

    command = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    lines = [
        f"Man-page option questions, recall of the gold chunk ({idx.num_chunks} chunks, "
        f"{idx.num_tokens / 1e6:.2f}M tokens)",
        "",
        "| split | n | BM25 R@1 | BM25 R@10 | cascade R@1 | cascade R@10 | BM25 page@10 | cascade page@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, t in table.items():
        lines.append(
            f"| {split} | {t['n']} | {t['bm25_r@1']:.3f} | {t['bm25_r@10']:.3f} | "
            f"{t['cascade_r@1']:.3f} | {t['cascade_r@10']:.3f} | {t['bm25_page@10']:.3f} | "
            f"{t['cascade_page@10']:.3f} |"
        )
    lines += [
        "",
        "R@k: a gold chunk (its neighbour text holds the option's evidence) in the top k. page@10: any "
        "chunk of the option's man page in the top 10 (a diagnostic).",
    ]
    lines += ["", f"cascade latency p50 {np.percentile(lat, 50):.0f} ms, p90 {np.percentile(lat, 90):.0f} ms"]

    reader_out, reader_msg = None, ""
    if args.reader:
        reader, reader_msg = load_reader()
        if reader is None:
            lines += ["", f"reader: skipped ({reader_msg})"]
        else:
            reader_out = answer_questions(reader, rows, lambda q: top_texts[q])
            lines += ["", "| reader | split | n | exact match | contains |", "|---|---|---:|---:|---:|"]
            for name in ("cascade", "oracle"):
                for split, t in reader_out[name].items():
                    lines.append(f"| {name} | {split} | {t['n']} | {t['em']:.3f} | {t['contains']:.3f} |")
    report = "\n".join(lines)
    print(report)

    out = Path(args.out)
    results = {
        "command": command,
        "run_info": run_info(),
        "questions": str(args.questions),
        "corpus": str(args.corpus),
        "index": str(idx_path),
        "index_counts": {"docs": idx.num_docs, "chunks": idx.num_chunks, "tokens": idx.num_tokens},
        "cascade_config": config_to_dict(cfg),
        "gold": {
            "by_evidence": len(rows) - by_line - len(no_gold),
            "by_answer_line": by_line,
            "none": no_gold,
        },
        "recall": table,
        "cascade_latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90))},
        "reader": {k: v for k, v in reader_out.items() if k != "samples"} if reader_out else reader_msg,
        "markdown": report,
    }
    atomic_write_json(out / "manpage_qa_results.json", results)
    with open(out / "manpage_qa_samples.jsonl", "w") as f:
        for s in samples:
            f.write(json.dumps(s) + "\n")
        if reader_out:
            for s in reader_out["samples"]:
                f.write(json.dumps({"reader": s}) + "\n")
    log(f"wrote {out / 'manpage_qa_results.json'} and {out / 'manpage_qa_samples.jsonl'}")
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="cut evidence from the corpus and write the question file")
    mk.add_argument("--corpus", default="data/manqa/real.jsonl")
    mk.add_argument("--source", default=str(SOURCE))
    mk.add_argument("--out", default=str(QUESTIONS))
    rn = sub.add_parser("run", help="retrieval recall (and the reader, when there is one)")
    rn.add_argument("--corpus", default="data/manqa/real.jsonl")
    rn.add_argument("--index", default="data/manqa/idx")
    rn.add_argument("--questions", default=str(QUESTIONS))
    rn.add_argument("--out", default="data/manqa")
    rn.add_argument("--limit", type=int, default=0, help="first N questions only (a smoke run)")
    rn.add_argument("--split", choices=("dev", "test", "all"), default="all", help="pick settings on dev")
    rn.add_argument(
        "--cascade", nargs="*", default=[], metavar="KEY=VALUE", help="CascadeConfig overrides, e.g. n2=64"
    )
    rn.add_argument("--no-reader", dest="reader", action="store_false", help="skip the reader hook")
    rn.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    if args.cmd == "make":
        rows = make(Path(args.corpus), Path(args.source), Path(args.out))
        n_dev = sum(r["split"] == "dev" for r in rows)
        print(f"{len(rows)} questions ({n_dev} dev, {len(rows) - n_dev} test) -> {args.out}")
    else:
        run(args)


if __name__ == "__main__":
    main()
