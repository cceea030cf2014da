"""BM25 postings once per chunk: two neighbour documents that share a chunk share one 4-byte entry.

A chunk's BM25 document is its neighbour text, the chunk plus its continuation (index/bm25.py), so a
term of chunk j is in two documents: j's own and j - 1's, whose continuation j is. The packed layout
(index/postings.py) stores both postings, each a row and a score code: ~5.4 B/token at 10M, the
largest part of an index (BENCHMARKS.md, "Bytes per token by part (issue 12)"), and mostly pairs
(j - 1, j) with consecutive rows.

Here one uint32 entry at row j holds two term frequencies: a = tf in document j, and b = tf in
document j - 1 (when chunk j continues that document and no entry of its own stands at j - 1). Each
term's documents are cut, from the right, into runs of consecutive rows of one document; a run of
L documents takes ceil(L / 2) entries, so a term that one chunk holds (documents j - 1 and j) is one
entry, as if the chunk's terms were posted once, and a term in every chunk of a document costs half
an entry a chunk. The code indexes a table of (a, b) pairs (a few dozen per shard). A query reads
the entries of a term and scores document j from a, document j - 1 from b, with bm25s's own float
expression (`tf_scores`) over the stored document length: the frequencies are the ones bm25s
counted, so every score is bit-identical, whatever the term kind (words cut by the boundary,
bigrams and compounds across it included). `write_once` checks it on every posting of the shard
and returns False otherwise (the caller then writes the packed layout).

Measured on a 10M-token needles index (BENCHMARKS.md, "Postings once per chunk"): postings 5.40 ->
2.81 B/token, every BM25 and expanded-list answer bit-identical; the expanded list as fast (a
synonym group's columns are decoded together), plain BM25 ~10-15% slower (two documents' float
expressions per entry against one table gather per posting). Deriving the neighbour's frequency
from the chunks' own counts (tf(i) = 2 own(i) + own(i + 1), with corrections for what the boundary
cuts, as the issue proposed) was built first: the same scores, 2.84 B/token, slower queries (a
document's frequency sums two entries) and 3.6 GB peak to write a shard against 2.1 GB.

What the query needs besides the entries: each document's length (bm25s's length norm; `doc_len.npy`,
uint16 or uint32 by the largest) and each term's document frequency (`df.npy` uint32; an entry
count is no longer a df; idf and the expansion's df caps read it).

Files (`bm25/`): postings.npy uint32 [n] (row | code << row_bits), pairs.npy int32 [K, 2] (a, b),
indptr.npy uint32 [V + 1], df.npy uint32 [V], doc_len.npy [C], term_hash.npy uint64 [V] sorted
(columns in hash order), postings.json {"layout": "once-u32", "row_bits", "codes", "k1", "b", "avgdl"}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from index.postings import (
    INDPTR_FILE,
    META_FILE,
    POSTINGS_FILE,
    csc_term_freqs,
    length_norm,
    row_bits,
    tf_scores,
)

LAYOUT = "once-u32"  # the layout name in postings.json; BuildConfig.bm25_postings "once"
PAIRS_FILE = "pairs.npy"
DF_FILE = "df.npy"
DOC_LEN_FILE = "doc_len.npy"


def pair_entries(
    cols: np.ndarray, docs: np.ndarray, tf: np.ndarray, next_chunk: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(col, row, a, b) of the entries for postings (cols, docs, tf) sorted by (col, doc).

    next_chunk: int [C], i + 1 where chunk i's document continues in chunk i + 1, else -1."""
    n = len(docs)
    if n == 0:
        return cols, docs, tf, tf
    cont = np.asarray(next_chunk) == np.arange(len(next_chunk)) + 1
    # posting k links to k + 1 when it is the next document of the same chunk chain, same term
    link = np.zeros(n, bool)
    link[:-1] = (cols[1:] == cols[:-1]) & (docs[1:] == docs[:-1] + 1) & cont[docs[:-1]]
    ends = np.flatnonzero(~link)  # the last posting of each run
    dist = ends[np.searchsorted(ends, np.arange(n))] - np.arange(n)
    head = dist % 2 == 0  # from the right: the run's last posting, then every second one
    takes_prev = np.zeros(n, bool)  # an entry at k also carries k - 1 when linked to it
    takes_prev[1:] = head[1:] & link[:-1]
    b = np.zeros(n, tf.dtype)
    b[1:] = np.where(takes_prev[1:], tf[:-1], 0)
    return cols[head], docs[head], tf[head], b[head]


def write_once(
    folder: Path,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    doc_len: np.ndarray,
    hashes: np.ndarray,
    next_chunk: np.ndarray,
    *,
    k1: float,
    b: float,
) -> bool:
    """Write the once layout into `folder` from bm25s's CSC arrays (columns = vocab ids, rows
    ascending in each); False, nothing written, unless every score comes back bit for bit."""
    n = len(doc_len)
    found = csc_term_freqs(data, indices, indptr, doc_len, k1, b)
    rb = row_bits(n)
    if found is None or rb >= 32:
        return False
    tf, avgdl = found
    df = np.diff(np.asarray(indptr, np.int64))
    cols = np.repeat(np.arange(len(df), dtype=np.int64), df)
    docs = np.asarray(indices, np.int64)
    col, row, fa, fb = pair_entries(cols, docs, tf.astype(np.int64), next_chunk)
    # the check: the postings the entries give back are bm25s's, term frequency for term frequency
    # (csc_term_freqs checked `tf_scores` of these against every float32 score)
    back = np.concatenate([col * n + row, (col * n + row - 1)[fb > 0]])
    back_tf = np.concatenate([fa, fb[fb > 0]])
    order = np.argsort(back, kind="stable")
    if not (np.array_equal(back[order], cols * n + docs) and np.array_equal(back_tf[order], tf)):
        return False
    table, code = np.unique(np.stack([fa, fb], axis=1), axis=0, return_inverse=True)
    if len(table) > (1 << (32 - rb)) or table.max(initial=0) > np.iinfo(np.int32).max:
        return False
    by_hash = np.argsort(hashes, kind="stable")  # new column j = vocab id by_hash[j]
    rank = np.empty_like(by_hash)
    rank[by_hash] = np.arange(len(by_hash))
    new_col = rank[col]
    perm = np.lexsort((row, new_col))
    words = (code.reshape(-1).astype(np.uint64)[perm] << np.uint64(rb)) | row[perm].astype(np.uint64)
    np.save(folder / POSTINGS_FILE, words.astype(np.uint32))
    np.save(folder / PAIRS_FILE, table.astype(np.int32))
    counts = np.bincount(new_col, minlength=len(hashes))
    np.save(folder / INDPTR_FILE, np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32))
    np.save(folder / DF_FILE, df[by_hash].astype(np.uint32))
    wide = np.max(doc_len, initial=0) >= 1 << 16
    np.save(folder / DOC_LEN_FILE, np.asarray(doc_len).astype(np.uint32 if wide else np.uint16))
    np.save(folder / "term_hash.npy", np.asarray(hashes)[by_hash])
    meta = {"layout": LAYOUT, "row_bits": rb, "codes": len(table), "k1": k1, "b": b, "avgdl": avgdl}
    (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True))
    return True


def layout_of(folder: Path) -> str | None:
    """The layout named in a bm25/ folder's postings.json, or None (bm25s's csc files)."""
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()).get("layout") if path.is_file() else None


class OncePostings:
    """A once-layout shard's entries, memory-mapped; each column's documents and scores from them."""

    def __init__(self, folder: Path, num_rows: int) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        self.num_rows = num_rows
        self.mask = np.uint32((1 << int(meta["row_bits"])) - 1)
        self.shift = np.uint32(int(meta["row_bits"]))

        def load(name: str) -> np.ndarray:  # memory-mapped, as a plain ndarray (np.memmap ops cost more)
            return np.load(folder / name, mmap_mode="r").view(np.ndarray)

        self.words, self.indptr, self.df = load(POSTINGS_FILE), load(INDPTR_FILE), load(DF_FILE)
        self.doc_len = load(DOC_LEN_FILE)
        pairs = np.load(folder / PAIRS_FILE).astype(np.float64)
        self.tf_a, self.tf_b = pairs[:, 0].copy(), pairs[:, 1].copy()
        # bm25s's length norm of every document, float64 in memory (8 bytes a chunk, 0.125 B/token
        # resident): one gather a posting instead of two (the lengths, then a norm per length)
        top = int(np.max(self.doc_len, initial=0))
        by_len = length_norm(np.arange(top + 1), float(meta["k1"]), float(meta["b"]), float(meta["avgdl"]))
        self.norm = by_len[self.doc_len]

    def _decode(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, codes) of entries, both intp: np.take is ~10x slower with uint32 indices."""
        return (w & self.mask).astype(np.intp), (w >> self.shift).astype(np.intp)

    @staticmethod
    def _take(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """table[idx], with "clip" (no bounds check; it is 2x faster): row 0's previous document,
        -1, reads document 0's norm, whose score is 0 anyway (b = 0: row 0 has no previous)."""
        return np.take(table, idx, mode="clip")

    def pieces(self, c: int, idf32: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Column `c` (shard idf `idf32`) as two disjoint (documents int64 ascending, float32 scores):
        the entries' own documents, then the previous documents they carry. An entry that carries
        none gives its previous document (-1 for row 0: the last) a score of 0, which adds nothing
        to a sum or a maximum; dropping them would cost more than the additions."""
        w = self.words[int(self.indptr[c]) : int(self.indptr[c + 1])]
        if len(w) == 0:
            return []
        row, code = self._decode(w)
        prev = row - 1
        return [
            (row, tf_scores(idf32, self._take(self.tf_a, code), self._take(self.norm, row))),
            (prev, tf_scores(idf32, self._take(self.tf_b, code), self._take(self.norm, prev))),
        ]

    def weighted(
        self, cols: np.ndarray, idf32: np.ndarray, weights: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Several columns at once (a synonym group: one decode, not one per term) as two
        (documents, float64 weight x score) pieces, the columns' entries one after another: what a
        maximum over the columns needs (a document recurs across columns)."""
        spans = [(int(self.indptr[c]), int(self.indptr[c + 1])) for c in cols]
        w = np.concatenate([self.words[a:z] for a, z in spans])
        lens = [z - a for a, z in spans]
        row, code = self._decode(w)
        prev = row - 1
        idf, weight = np.repeat(np.asarray(idf32, np.float64), lens), np.repeat(weights, lens)
        return [
            (row, tf_scores(idf, self._take(self.tf_a, code), self._take(self.norm, row)) * weight),
            (prev, tf_scores(idf, self._take(self.tf_b, code), self._take(self.norm, prev)) * weight),
        ]

    def column(self, c: int, idf32: float) -> tuple[np.ndarray, np.ndarray]:
        """(documents ascending, float32 scores) of column `c`: the postings bm25s holds."""
        parts = self.pieces(c, idf32)
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        docs = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        keep = scores > 0
        order = np.argsort(docs[keep], kind="stable")
        return docs[keep][order], scores[keep][order]
