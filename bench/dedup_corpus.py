"""Near-duplicate removal for a jsonl text corpus, at document level (exact word-shingle containment).

    python bench/dedup_corpus.py IN.jsonl OUT.jsonl [--ngram 8] [--threshold 0.5] [--max-words N]
                                 [--clean-whitespace] [--order length|input]

Each input line is a JSON object with a "text" field (other fields are kept), e.g. the output of
`/work/shared/tools/realtext-corpus`. A document's shingles are its word n-grams, hashed to 64 bits
(words -> ids through one vocabulary, then a polynomial hash over each window: deterministic, no
dependency). Documents are visited longest first (`--order length`, so a page that is a subset of a
longer one is the one dropped) and a document is dropped when at least `--threshold` of its distinct
shingles were already seen in the documents kept before it; otherwise its shingles join the seen set.
This is containment, not Jaccard: it also removes a short page embedded in a longer one (`man` pages
that are aliases, the same page in two sections or two packages, "see the main page" stubs). Kept
documents are written in input order; `--max-words` stops writing once that many words are out.

`--clean-whitespace` undoes man-page layout before shingling and writing: leading indentation and
trailing spaces are removed, runs of spaces inside a line (groff's justification padding) become one
space and three or more newlines become two. Words are unchanged.

Memory: one 64-bit hash per distinct kept shingle in a Python set (~70 bytes each; 10M words ~ 0.7 GB).
Prints docs in/out, words in/out, tokens in/out (words x 1.3, the estimate realtext-corpus uses) and the
number of documents dropped per reason.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)
_SPACES = re.compile(r"(?<=\S) {2,}")
_LEADING = re.compile(r"^[ \t]+|[ \t]+$", re.MULTILINE)
_NEWLINES = re.compile(r"\n{3,}")


def clean_whitespace(text: str) -> str:
    """Remove leading indentation and trailing spaces, squeeze inner space runs and blank-line runs."""
    text = _LEADING.sub("", text)
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n\n", text).strip() + "\n"


def shingle_hashes(word_ids: np.ndarray, n: int) -> np.ndarray:
    """word_ids [W] -> distinct uint64 hashes of the W-n+1 windows of n words (one window if W < n)."""
    ids = word_ids.astype(np.uint64) + np.uint64(1)
    if len(ids) < n:
        n = max(len(ids), 1)
        if len(ids) == 0:
            return np.zeros(0, np.uint64)
    h = np.zeros(len(ids) - n + 1, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _MULT + ids[j : j + len(h)]
    return np.unique(h)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path, help="jsonl corpus, one {'text': ...} object per line")
    ap.add_argument("output", type=Path, help="jsonl file to write (kept documents, input order)")
    ap.add_argument("--ngram", type=int, default=8, help="words per shingle (default 8)")
    ap.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="drop a document when this fraction of its distinct shingles was already seen (default 0.5)",
    )
    ap.add_argument("--min-words", type=int, default=50, help="drop documents shorter than this (default 50)")
    ap.add_argument("--max-words", type=float, default=0, help="stop writing after this many words (0 = all)")
    ap.add_argument(
        "--order", choices=["length", "input"], default="length", help="visit order (default length)"
    )
    ap.add_argument(
        "--clean-whitespace", action="store_true", help="undo man-page indentation and justification"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    if not a.input.is_file():
        ap.error(f"{a.input}: no such file")
    if a.input.resolve() == a.output.resolve():
        ap.error("output must differ from input")
    if a.ngram < 1:
        ap.error("--ngram must be >= 1")
    if not 0.0 < a.threshold <= 1.0:
        ap.error("--threshold must be in (0, 1]")
    if a.max_words < 0 or a.min_words < 0:
        ap.error("--max-words and --min-words must be >= 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0 = time.time()
    docs, vocab, word_ids = [], {}, []
    with a.input.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{a.input}:{lineno}: not JSON ({e.msg})")
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                sys.exit(f"{a.input}:{lineno}: expected an object with a string 'text' field")
            text = clean_whitespace(obj["text"]) if a.clean_whitespace else obj["text"]
            obj["text"] = text
            docs.append(obj)
            word_ids.append(np.fromiter((vocab.setdefault(w, len(vocab)) for w in text.split()), np.int64))
            if not a.quiet and len(docs) % 2000 == 0:
                print(f"read {len(docs):,} docs ({time.time() - t0:.0f} s)", file=sys.stderr)
    if not docs:
        sys.exit(f"{a.input}: no documents")
    nwords = np.array([len(w) for w in word_ids])
    order = np.argsort(-nwords, kind="stable") if a.order == "length" else np.arange(len(docs))
    seen: set[int] = set()
    keep = np.zeros(len(docs), bool)
    short = dup = 0
    for i, d in enumerate(order):
        if nwords[d] < a.min_words:
            short += 1
            continue
        sh = shingle_hashes(word_ids[d], a.ngram).tolist()
        overlap = sum(1 for h in sh if h in seen) / len(sh)
        if overlap >= a.threshold:
            dup += 1
            continue
        keep[d] = True
        seen.update(sh)
        if not a.quiet and (i + 1) % 2000 == 0:
            print(
                f"deduplicated {i + 1:,}/{len(docs):,} docs, kept {keep.sum():,} ({time.time() - t0:.0f} s)",
                file=sys.stderr,
            )
    a.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.output.with_name(a.output.name + ".tmp")
    out_docs = out_words = capped = 0
    with tmp.open("w") as f:
        for d in np.flatnonzero(keep):
            if a.max_words and out_words >= a.max_words:
                capped += 1
                continue
            f.write(json.dumps(docs[d]) + "\n")
            out_docs += 1
            out_words += int(nwords[d])
    tmp.replace(a.output)
    in_words = int(nwords.sum())
    print(
        f"docs in {len(docs):,} -> out {out_docs:,} (dropped: {dup:,} near-duplicate, {short:,} short, "
        f"{capped:,} over --max-words)\n"
        f"words in {in_words:,} -> out {out_words:,}; tokens (words x 1.3) in ~{int(in_words * 1.3):,} -> "
        f"out ~{int(out_words * 1.3):,}\n"
        f"ngram {a.ngram}, threshold {a.threshold}, order {a.order}, clean_whitespace {a.clean_whitespace}; "
        f"{time.time() - t0:.0f} s -> {a.output}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
