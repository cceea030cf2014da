"""Compare BM25 document designs on two question sets, side by side, over the same chunks.

    python bench/bm25_terms.py --needles runs/demo/cells/needles-single-1M-n100-t0 \
        --chunks data/cascade/final/idx_full data/cascade/final/questions.jsonl

Designs (what a chunk's BM25 document holds) x query bigram weights:
- "chunk": the chunk's words (+ bigrams);
- "neighbour": the chunk's and its continuation's words (+ bigrams across both);
- "own x2 + cont": the neighbour's terms plus the chunk's own words once more (the index's design).
Needle set: recall@10 = a needle's whole sentence lies in one retrieved chunk + continuation.
Chunk set (questions generated from one chunk, bench/cascade.py): recall@10 = that chunk, or the chunk
before it in the same document (whose neighbour text holds it), is in the top 10.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index import Index  # noqa: E402
from index.bm25 import text_words, with_bigrams  # noqa: E402

# own: the chunk's words; joined: the words of chunk text + continuation text (one word across the cut)
DESIGNS = {
    "chunk": lambda own, joined: with_bigrams(own),
    "neighbour": lambda own, joined: with_bigrams(joined),
    "own x2 + cont": lambda own, joined: with_bigrams(joined) + own,
}
WEIGHTS = (1.0, 0.5, 0.25, 0.0)


def _evaluate(idx: Index, questions: list[tuple[str, object]], hit) -> dict[str, dict[float, float]]:
    import bm25s

    ids = np.arange(idx.num_chunks)
    words = [text_words(t) for t in idx.chunk_text(ids)]
    joined = [text_words(t) for t in idx.neighbour_text(ids)]
    doc = idx.chunk_doc(ids)
    same_next = np.r_[doc[1:] == doc[:-1], False]
    out: dict[str, dict[float, float]] = {}
    for name, make in DESIGNS.items():
        vocab: dict[str, int] = {}
        corpus = [[vocab.setdefault(t, len(vocab)) for t in make(w, joined[i])] for i, w in enumerate(words)]
        model = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        model.index((corpus, {i: i for i in range(len(vocab))}), show_progress=False)
        out[name] = {}
        for weight in WEIGHTS:
            found = 0
            for question, target in questions:
                scores = np.zeros(idx.num_chunks)
                for term in set(with_bigrams(text_words(question))):
                    if term in vocab:
                        scores += (weight if " " in term else 1.0) * model.get_scores([vocab[term]])
                found += hit(np.argsort(-scores)[:10], target, same_next)
            out[name][weight] = found / len(questions)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--needles", type=Path, help="a niah cell folder (index/ + needles.jsonl)")
    ap.add_argument(
        "--chunks",
        nargs=2,
        type=Path,
        metavar=("INDEX", "QUESTIONS"),
        help="an index and bench/cascade.py questions (question, full_chunk, full_prev)",
    )
    a = ap.parse_args()
    tables = {}
    if a.needles:
        idx = Index.open(a.needles / "index")
        texts = [" ".join(t.split()) for t in idx.neighbour_text(np.arange(idx.num_chunks))]
        qs = [
            (n["question"], " ".join(n["text"].split()))
            for n in map(json.loads, open(a.needles / "needles.jsonl"))
        ]
        tables["needles"] = _evaluate(
            idx, qs, lambda top, sentence, _: any(sentence in texts[c] for c in top)
        )
    if a.chunks:
        idx = Index.open(a.chunks[0])
        qs = [(q["question"], (q["full_chunk"], q["full_prev"])) for q in map(json.loads, open(a.chunks[1]))]
        tables["chunks"] = _evaluate(
            idx, qs, lambda top, t, same: t[0] in top or (t[1] in top and same[t[1]])
        )
    for name, table in tables.items():
        print(
            f"\n{name}: recall@10\n\n| design | " + " | ".join(f"bigram weight {w}" for w in WEIGHTS) + " |"
        )
        print("|---|" + "---|" * len(WEIGHTS))
        for design, row in table.items():
            print(f"| {design} | " + " | ".join(f"{row[w]:.3f}" for w in WEIGHTS) + " |")


if __name__ == "__main__":
    main()
