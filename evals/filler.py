"""Filler documents for haystacks, streamed one document at a time and deterministic from a seed.

- `noise_docs`:  RULER's repeated noise sentences (a sanity check: every chunk looks alike);
- `words_docs`:  runs of sentences from a seeded pool of 65,536 random-word sentences (the filler of
                 the `needles` haystack, which adds thousands of distractor needles on top);
- `TextSource`:  real documents from a folder (.txt .md .rst .text files and .jsonl with a "text"
                 field) or one .jsonl file, in a seeded order. Documents do not repeat while the
                 folder covers the requested size; past that it starts another pass (shuffled
                 again) and says so in `warnings`.
Only one document is in memory at a time; the text source keeps (file, offset, length) per document.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evals.words import ADJECTIVES, NOUNS, PREPOSITIONS, VERBS

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text", ".jsonl")


def _doc_lengths(seed: int, doc_chars: int, salt: int) -> Iterator[int]:
    rng = np.random.default_rng([seed, salt])
    while True:
        for n in rng.integers(doc_chars // 2, doc_chars * 3 // 2 + 1, size=1024).tolist():
            yield int(n)


def noise_docs(seed: int, doc_chars: int = 8000) -> Iterator[tuple[str, str]]:
    """Endless (doc_id, text) documents of repeated noise sentences, lengths seeded."""
    for i, n in enumerate(_doc_lengths(seed, doc_chars, 1)):
        text = NOISE * (n // len(NOISE) + 1)
        yield f"noise-{i:08d}", text[: text.rfind(". ", 0, n) + 1]


def sentence_pool(seed: int, size: int = 65536) -> list[str]:
    """`size` seeded random-word sentences ('The calm otter sorts the lazy kettle near the reef.')."""
    rng = np.random.default_rng([seed, 2])
    a = rng.integers(0, len(ADJECTIVES), size=(size, 2)).tolist()
    n = rng.integers(0, len(NOUNS), size=(size, 3)).tolist()
    v = rng.integers(0, len(VERBS), size=size).tolist()
    p = rng.integers(0, len(PREPOSITIONS), size=size).tolist()
    return [
        f"The {ADJECTIVES[a1]} {NOUNS[n1]} {VERBS[vv]} the {ADJECTIVES[a2]} {NOUNS[n2]} {PREPOSITIONS[pp]} the {NOUNS[n3]}."
        for (a1, a2), (n1, n2, n3), vv, pp in zip(a, n, v, p, strict=True)
    ]


def words_docs(seed: int, doc_chars: int = 8000, run: int = 4) -> Iterator[tuple[str, str]]:
    """Endless (doc_id, text) documents of random-word sentences from `sentence_pool(seed)`, taken
    as runs of `run` consecutive pool sentences at seeded positions (slicing one joined string is
    much faster than joining single sentences)."""
    pool = sentence_pool(seed)
    big = " ".join(pool)
    starts = np.cumsum([0] + [len(x) + 1 for x in pool])  # start of sentence i in `big`; starts[-1] = len + 1
    mean = (starts[-1] / len(pool)) * run
    rng = np.random.default_rng([seed, 3])
    for i, n in enumerate(_doc_lengths(seed, doc_chars, 4)):
        first = rng.integers(0, len(pool) - run, size=max(1, int(n / mean))).tolist()
        yield f"words-{i:08d}", " ".join([big[starts[a] : starts[a + run] - 1] for a in first])


class TextSource:
    """Real documents under a folder (or one .jsonl file), streamed in a seeded order."""

    def __init__(self, path: str | os.PathLike, max_doc_chars: int = 1_000_000):
        """Scan `path` once for document offsets and sizes (no text is kept)."""
        self.root = Path(path)
        if not self.root.exists():
            raise ValueError(f"text haystack: {self.root}: no such file or folder")
        if self.root.is_file():
            files = [self.root] if self.root.suffix == ".jsonl" else []
            if not files:
                raise ValueError(f"text haystack: {self.root}: expected a folder or a .jsonl file")
        else:
            files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        self.files = files
        units_f, units_o, units_n = [], [], []
        for fi, f in enumerate(files):
            if f.suffix == ".jsonl":
                off = 0
                with open(f, "rb") as fh:
                    for line in fh:
                        if len(line) > 12:  # skip blank lines and empty records
                            units_f.append(fi)
                            units_o.append(off)
                            units_n.append(len(line))
                        off += len(line)
            else:
                size = f.stat().st_size
                for part in range(0, max(size, 1), max_doc_chars):  # long files become several documents
                    if size:
                        units_f.append(fi)
                        units_o.append(-1 - part)  # negative: byte offset into a plain text file
                        units_n.append(min(max_doc_chars, size - part))
        if not units_f:
            raise ValueError(f"text haystack: {self.root}: no documents found (.txt .md .rst .text .jsonl)")
        self.unit_file = np.array(units_f, dtype=np.int32)
        self.unit_off = np.array(units_o, dtype=np.int64)
        self.unit_len = np.array(units_n, dtype=np.int64)
        self.approx_chars = int(self.unit_len.sum())  # bytes; about the number of characters

    def _read(self, u: int) -> tuple[str, str]:
        f = self.files[int(self.unit_file[u])]
        rel = f.relative_to(self.root).as_posix() if self.root.is_dir() else f.name
        off = int(self.unit_off[u])
        with open(f, "rb") as fh:
            if off >= 0:
                fh.seek(off)
                line = fh.readline()
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{f}: byte {off}: not valid JSON") from None
                text = rec.get("text") if isinstance(rec, dict) else None
                if not isinstance(text, str):
                    raise ValueError(f"{f}: byte {off}: record has no string 'text' field")
                return f"{rel}@{off}", text
            start = -1 - off
            fh.seek(start)
            raw = fh.read(int(self.unit_len[u]))
            return (f"{rel}#{start}" if start else rel), raw.decode("utf-8", errors="replace")

    def docs(self, seed: int) -> Iterator[tuple[str, str]]:
        """Endless (doc_id, text): every document once per pass, each pass in a new seeded order;
        from the second pass on ids get a `~pass{p}` suffix."""
        n = len(self.unit_len)
        for p in range(1 << 30):
            order = np.random.default_rng([seed, 5, p]).permutation(n)
            for u in order.tolist():
                doc_id, text = self._read(u)
                if text.strip():
                    yield (doc_id if p == 0 else f"{doc_id}~pass{p + 1}"), text
