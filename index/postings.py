"""BM25 postings packed into 4 bytes each, with scores bit-identical to bm25s's float32 ones.

bm25s stores a shard's scores as a CSC matrix: a float32 score and an int32 row per posting, 8
bytes, the largest part of an index on disk (BENCHMARKS.md, "Bytes per token by part (issue 12)").
Neither needs 32 bits. A shard's rows fit in `row_bits` = bits of its chunk count (18 for the
default 262,144 chunks), and a score is idf(term) x tfc(tf, chunk length), where the
term-frequency component takes few distinct values per shard (one per (tf, length) pair seen: a
few thousand). So each posting is one uint32: row in the low `row_bits` bits, the index of its tfc
in the shard's table `tfc.npy` (float64, sorted) in the high bits. Scoring gathers the table and
multiplies by the term's idf exactly as bm25s did (float32 idf widened to float64, times the
float64 tfc, rounded to float32), so every score, and therefore every ranking, is bit-identical
to the old layout; `pack_postings` checks that on every posting and returns None (the shard keeps
the old layout) when it does not hold or the table outgrows its bits.

Columns are stored in the order of their term hashes, so a term's column is its position in
`term_hash.npy` and the old `term_col.npy` (8 bytes per term) is not written; `indptr.npy` is
uint32 (the old one int64), and bm25s's vocab json, an identity map here, is dropped too.

Files (`bm25/`): postings.npy uint32 [nnz], tfc.npy float64 [K], indptr.npy uint32 [V+1],
term_hash.npy uint64 [V] sorted, postings.json {"layout", "row_bits", "codes", "k1", "b", "avgdl"}.
All memory-mapped as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

LAYOUT = "packed-u32"  # the layout name in postings.json and BuildConfig.bm25_postings ("packed")
META_FILE = "postings.json"
POSTINGS_FILE = "postings.npy"
TFC_FILE = "tfc.npy"
INDPTR_FILE = "indptr.npy"


def row_bits(num_rows: int) -> int:
    """Bits a row index of a shard with `num_rows` chunks needs (at least 1)."""
    return max(1, (max(num_rows, 1) - 1).bit_length())


def lucene_idf32(df: np.ndarray, n: int) -> np.ndarray:
    """float32 [n]: the idf bm25s's "lucene" method stores, computed the way it does (math.log of
    Python floats, rounded to float32), so a score rebuilt from it is bit-identical."""
    return np.array([math.log(1 + (n - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()], np.float32)


def length_norm(doc_len: np.ndarray, k1: float, b: float, avgdl: float) -> np.ndarray:
    """float64 [C]: k1 * (1 - b + b * length / avgdl) per document, the expression bm25s evaluates."""
    return k1 * ((1 - b) + b * np.asarray(doc_len, np.float64) / avgdl)


def tf_scores(idf32: float | np.ndarray, tf: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """float32 [n]: bm25s's score of term frequencies `tf` (float64) in documents of length norm
    `norm` (float64, `length_norm`; overwritten, a fresh gather) for a term of shard idf `idf32`
    (float32, or float64 [n] of float32 values, one per posting): idf * (tf / (norm + tf)) rounded
    to float32, the same operations, so the same bits."""
    norm += tf
    np.divide(tf, norm, out=norm)
    norm *= np.float64(idf32) if np.isscalar(idf32) else idf32
    return norm.astype(np.float32)


def csc_term_freqs(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, doc_len: np.ndarray, k1: float, b: float
) -> tuple[np.ndarray, float] | None:
    """(float64 term frequency of every posting of bm25s's CSC arrays, avgdl), inverted from the
    float32 scores; None unless `tf_scores` gives every score back bit for bit from them.

    doc_len: int [C], the number of terms of each chunk's BM25 document (bm25s's document length)."""
    n_rows = len(doc_len)
    rows = np.asarray(indices, np.int64)
    df = np.diff(np.asarray(indptr, np.int64))
    idf = np.repeat(lucene_idf32(df, n_rows).astype(np.float64), df)
    avgdl = np.asarray(doc_len, np.int64).mean()  # as bm25s computes it (numpy float64 mean)
    norm = length_norm(doc_len, k1, b, avgdl)[rows]  # float64 like bm25s
    with np.errstate(divide="ignore", invalid="ignore"):
        tfc_seen = np.asarray(data, np.float64) / idf
        tf = np.rint(tfc_seen * norm / (1.0 - tfc_seen))  # invert tfc = tf / (tf + norm)
    if not np.all(np.isfinite(tf)) or (tf.size and tf.min() < 1):
        return None
    if not np.array_equal((idf * (tf / (norm + tf))).astype(np.float32), data):  # every score, bit for bit
        return None
    return tf, float(avgdl)


def pack_postings(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, doc_len: np.ndarray, k1: float, b: float
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(packed uint32 [nnz], tfc table float64 [K], avgdl) for bm25s's CSC arrays, or None when the
    packed form would not give back every score bit for bit (or the table needs more codes than fit).

    doc_len: int [C], the number of terms of each chunk's BM25 document (bm25s's document length).
    """
    n_rows = len(doc_len)
    rows = np.asarray(indices, np.int64)
    found = csc_term_freqs(data, indices, indptr, doc_len, k1, b)
    if found is None:
        return None
    tf, avgdl = found
    tfc = tf / (length_norm(doc_len, k1, b, avgdl)[rows] + tf)
    table, code = np.unique(tfc, return_inverse=True)
    rb = row_bits(n_rows)
    if rb >= 32 or len(table) > (1 << (32 - rb)):
        return None
    packed = (code.astype(np.uint64) << np.uint64(rb)) | rows.astype(np.uint64)
    return packed.astype(np.uint32), table, float(avgdl)


def write_packed(
    folder: Path,
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    doc_len: np.ndarray,
    hashes: np.ndarray,
    *,
    k1: float,
    b: float,
) -> bool:
    """Write the packed layout (columns in hash order) into `folder`; False when `pack_postings`
    refuses (the caller then writes the old layout)."""
    indptr = np.asarray(indptr, np.int64)
    if indptr[-1] >= 1 << 32:
        return False
    packed = pack_postings(data, indices, indptr, doc_len, k1, b)
    if packed is None:
        return False
    words, table, avgdl = packed
    order = np.argsort(hashes, kind="stable")  # new column j = old column order[j]
    starts, lens = indptr[:-1][order], np.diff(indptr)[order]
    new_indptr = np.concatenate([[0], np.cumsum(lens)])
    gather = np.repeat(starts - new_indptr[:-1], lens) + np.arange(new_indptr[-1])
    np.save(folder / POSTINGS_FILE, words[gather])
    np.save(folder / TFC_FILE, table)
    np.save(folder / INDPTR_FILE, new_indptr.astype(np.uint32))
    np.save(folder / "term_hash.npy", np.asarray(hashes)[order])
    meta = {"layout": LAYOUT, "row_bits": row_bits(len(doc_len)), "codes": len(table), "k1": k1, "b": b}
    (folder / META_FILE).write_text(json.dumps({**meta, "avgdl": avgdl}, sort_keys=True))
    return True


def is_packed(folder: Path) -> bool:
    """Whether a shard's bm25/ folder holds the packed layout."""
    return (Path(folder) / META_FILE).is_file()


class PackedPostings:
    """A packed shard's postings, memory-mapped: rows and scores of one column at a time."""

    def __init__(self, folder: Path, num_rows: int) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("layout") != LAYOUT:
            raise ValueError(f"{folder / META_FILE}: unknown postings layout {meta.get('layout')!r}")
        self.num_rows = num_rows
        self.row_bits = int(meta["row_bits"])
        self.mask = np.uint32((1 << self.row_bits) - 1)
        self.shift = np.uint32(self.row_bits)
        self.words = np.load(folder / POSTINGS_FILE, mmap_mode="r")
        self.table = np.load(folder / TFC_FILE, mmap_mode="r")
        self.indptr = np.load(folder / INDPTR_FILE, mmap_mode="r")

    def column(self, c: int, idf32: float) -> tuple[np.ndarray, np.ndarray]:
        """(rows uint32, float32 scores) of column `c`, whose shard idf (float32) is `idf32`."""
        w = self.words[int(self.indptr[c]) : int(self.indptr[c + 1])]
        # the term's score per code first (K values, a few hundred), then one gather per posting
        scores = (np.float64(idf32) * self.table).astype(np.float32)
        return w & self.mask, scores[w >> self.shift]
