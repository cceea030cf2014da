"""BM25 postings stored once per chunk: a neighbour document's term frequencies derived at query time.

A chunk's BM25 document is its neighbour text, the chunk plus its continuation (index/bm25.py), so
the packed layout (index/postings.py) posts every chunk's terms twice: for its own document and again
for its predecessor's, whose continuation it is. Half of those ~5.4 B/token are the same counts
twice (BENCHMARKS.md, "Bytes per token by part (issue 12)").

Here a term's column holds one entry per chunk i where it occurs: (row i, code), the code indexing a
table of integer pairs (own, cont). Document i's term frequency is then

    tf(i) = own(i) + cont(i + 1)

where cont(j) is the term's count in chunk j's own terms (`text_terms` of the chunk alone), set
only when chunk j continues the same document as chunk j - 1, and own(i) = today's tf(i) - cont(i + 1):
mostly the chunk's words twice, its bigrams once. What the boundary does differently from two chunks
side by side (a word cut in two, "magic nu|mber"; the bigram across it; a compound cut at its hyphen;
a bigram that ends in a cut word) lands in own(i) as a correction, an entry of its own when chunk i
does not hold the term (own may be 0 or negative, tf never is). Every term frequency is therefore the
same integer as today's, and every score is bm25s's float32 (`tf_scores`): bit-identical for every
term kind. `write_once` checks that on every posting of the shard (derived frequencies against the
ones inverted from bm25s's own scores) and returns False otherwise; the caller then writes the
packed layout.

What the query time needs besides the entries: each document's length (for bm25s's length norm;
`doc_len.npy`, uint16 or uint32 by the largest) and each term's document frequency (`df.npy`
uint32: a column's entry count is no longer its df; idf and the expansion's df caps read it).

Files (`bm25/`): postings.npy uint32 [n] (row | code << row_bits), pairs.npy int32 [K, 2],
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


def once_entries(
    indices: np.ndarray,
    indptr: np.ndarray,
    tf: np.ndarray,
    own_cols: np.ndarray,
    own_rows: np.ndarray,
    next_chunk,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(col, row, own, cont) int64 [n] sorted by (col, row): the entries that give back `tf`.

    indices/indptr/tf: every (document, term) of the shard as bm25s's CSC columns, with its term
    frequency. own_cols/own_rows: one (column, chunk) per occurrence of a term in a chunk's own terms
    (a term of no document left out). next_chunk: int [C], i + 1 where chunk i continues in chunk i + 1."""
    n = len(next_chunk)
    cols = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(np.asarray(indptr, np.int64)))
    doc_key = cols * n + np.asarray(indices, np.int64)
    # cont(j): chunk j's own count, when chunk j - 1 is the same document (so j continues it)
    cont_of = np.zeros(n, bool)
    cont_of[1:] = np.asarray(next_chunk[:-1]) == np.arange(1, n)
    occ = np.asarray(own_cols, np.int64) * n + np.asarray(own_rows, np.int64)
    occ = occ[cont_of[np.asarray(own_rows, np.int64)]]
    # own(i) = tf(i) - cont(i + 1): +tf at each (col, i), -1 per continuing occurrence at (col, j - 1)
    keys = np.concatenate([doc_key, occ - 1, occ])
    own_add = np.concatenate(
        [tf.astype(np.int64), -np.ones(len(occ), np.int64), np.zeros(len(occ), np.int64)]
    )
    cont_add = np.concatenate([np.zeros(len(doc_key) + len(occ), np.int64), np.ones(len(occ), np.int64)])
    uniq, inv = np.unique(keys, return_inverse=True)
    own = np.bincount(inv, own_add, len(uniq)).astype(np.int64)
    cont = np.bincount(inv, cont_add, len(uniq)).astype(np.int64)
    keep = (own != 0) | (cont != 0)
    uniq, own, cont = uniq[keep], own[keep], cont[keep]
    return uniq // n, uniq % n, own, cont


def derived_freqs(col: np.ndarray, row: np.ndarray, own: np.ndarray, cont: np.ndarray, n: int):
    """(key = col * n + doc, tf) int64, sorted, tf > 0: what the entries say, as a query derives it."""
    keys = np.concatenate([col * n + row, (col * n + row - 1)[cont != 0]])
    uniq, inv = np.unique(keys, return_inverse=True)
    tf = np.bincount(inv, np.concatenate([own, cont[cont != 0]]), len(uniq)).astype(np.int64)
    return uniq[tf > 0], tf[tf > 0]


def write_once(
    folder: Path,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    doc_len: np.ndarray,
    hashes: np.ndarray,
    own_cols: np.ndarray,
    own_rows: np.ndarray,
    next_chunk: np.ndarray,
    *,
    k1: float,
    b: float,
) -> bool:
    """Write the once layout into `folder` from bm25s's CSC arrays (columns = vocab ids) and the
    chunks' own term occurrences; False (nothing written) unless every score comes back bit for bit."""
    n = len(doc_len)
    found = csc_term_freqs(data, indices, indptr, doc_len, k1, b)
    rb = row_bits(n)
    if found is None or rb >= 32:
        return False
    tf, avgdl = found
    col, row, own, cont = once_entries(indices, indptr, tf.astype(np.int64), own_cols, own_rows, next_chunk)
    # the check: the frequencies a query derives are bm25s's, posting for posting (so are the scores:
    # `tf_scores` is the expression csc_term_freqs checked against every float32 score)
    keys, tf_back = derived_freqs(col, row, own, cont, n)
    cols = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(np.asarray(indptr, np.int64)))
    order = np.argsort(cols * n + np.asarray(indices, np.int64), kind="stable")
    want_keys = (cols * n + np.asarray(indices, np.int64))[order]
    if not (np.array_equal(keys, want_keys) and np.array_equal(tf_back, tf[order].astype(np.int64))):
        return False
    table, code = np.unique(np.stack([own, cont], axis=1), axis=0, return_inverse=True)
    code = code.reshape(-1)
    if len(table) > (1 << (32 - rb)) or np.abs(table).max(initial=0) > np.iinfo(np.int32).max:
        return False
    lens = np.max(doc_len, initial=0)
    # columns in hash order: new column j = vocab id by_hash[j]
    by_hash = np.argsort(hashes, kind="stable")
    rank = np.empty_like(by_hash)
    rank[by_hash] = np.arange(len(by_hash))
    new_col = rank[col]
    perm = np.lexsort((row, new_col))
    words = ((code.astype(np.uint64)[perm] << np.uint64(rb)) | row[perm].astype(np.uint64)).astype(np.uint32)
    counts = np.bincount(new_col, minlength=len(hashes))
    np.save(folder / POSTINGS_FILE, words)
    np.save(folder / PAIRS_FILE, table.astype(np.int32))
    np.save(folder / INDPTR_FILE, np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32))
    np.save(folder / DF_FILE, np.diff(np.asarray(indptr, np.int64))[by_hash].astype(np.uint32))
    np.save(folder / DOC_LEN_FILE, np.asarray(doc_len).astype(np.uint16 if lens < 1 << 16 else np.uint32))
    np.save(folder / "term_hash.npy", np.asarray(hashes)[by_hash])
    meta = {"layout": LAYOUT, "row_bits": rb, "codes": len(table), "k1": k1, "b": b, "avgdl": avgdl}
    (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True))
    return True


def layout_of(folder: Path) -> str | None:
    """The layout named in a bm25/ folder's postings.json, or None (bm25s's csc files)."""
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()).get("layout") if path.is_file() else None


class OncePostings:
    """A once-layout shard's entries, memory-mapped; each column's documents and scores derived."""

    def __init__(self, folder: Path, num_rows: int) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        self.num_rows = num_rows
        self.mask = np.uint32((1 << int(meta["row_bits"])) - 1)
        self.shift = np.uint32(int(meta["row_bits"]))
        def load(name: str) -> np.ndarray:  # memory-mapped, as a plain ndarray (np.memmap ops cost more)
            return np.load(folder / name, mmap_mode="r").view(np.ndarray)

        self.words, self.indptr, self.df = load(POSTINGS_FILE), load(INDPTR_FILE), load(DF_FILE)
        self.doc_len = load(DOC_LEN_FILE)
        pairs = np.load(folder / PAIRS_FILE)
        self.own, self.cont = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        # bm25s's length norm of every document, float64 in memory (8 bytes a chunk, 0.125 B/token
        # resident): one gather a posting instead of two (the lengths' own table, then the norm)
        top = int(np.max(self.doc_len, initial=0))
        by_len = length_norm(np.arange(top + 1), float(meta["k1"]), float(meta["b"]), float(meta["avgdl"]))
        self.norm = by_len[self.doc_len]

    def pieces(self, c: int, idf32: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Column `c` (shard idf `idf32`) as two disjoint (documents int64 ascending, float32 scores):
        the documents with an entry, then those that hold the term only through their continuation.
        A document whose derived frequency is 0 may appear, with score 0."""
        w = self.words[int(self.indptr[c]) : int(self.indptr[c + 1])]
        if len(w) == 0:
            return []
        row = (w & self.mask).astype(np.int64)
        code = w >> self.shift
        own, cont = np.take(self.own, code), np.take(self.cont, code)
        # document i: own(i) + cont(i + 1), where chunk i + 1's entry is the next one (rows ascend)
        nxt = row[1:] == row[:-1] + 1
        tf = own.astype(np.float64)
        tf[:-1] += np.where(nxt, cont[1:], 0)
        out = [(row, tf_scores(idf32, tf, self.norm[row]))]
        # documents that hold the term only through their continuation: i = j - 1 with no entry
        alone = cont != 0
        alone[1:] &= ~nxt
        if alone.any():
            prev = row[alone] - 1
            out.append((prev, tf_scores(idf32, cont[alone].astype(np.float64), self.norm[prev])))
        return out

    def hits(self, c: int, idf32: float) -> tuple[np.ndarray, np.ndarray]:
        """(documents int64, unique, not sorted; float32 scores) of column `c`: `pieces` joined."""
        parts = self.pieces(c, idf32)
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def column(self, c: int, idf32: float) -> tuple[np.ndarray, np.ndarray]:
        """(documents ascending, float32 scores) of column `c` with a positive frequency: the
        postings bm25s would hold."""
        docs, scores = self.hits(c, idf32)
        order = np.argsort(docs, kind="stable")
        docs, scores = docs[order], scores[order]
        return docs[scores > 0], scores[scores > 0]
