"""Training data: neighbours precomputed through the index, stored as int memmaps, and a batch loader.

A neighbour store is a folder:
    chunks.npy       int32 [N, M]   every chunk's tokens (pad_id where a document ended)
    doc.npy          int64 [N]      global document index of each chunk
    neighbours.npy   int64 [N, K]   retrieved chunk ids, best first; -1 = none; same-document chunks
                                    and chunks of held-out documents are never neighbours
    chunk_bytes.npy  int32 [N]      UTF-8 bytes of each chunk's text (for bits-per-byte)
    meta.json        written last: counts, chunk_len, k, pad_id, vocab_size, held-out fraction, method
Documents are split into train / held-out by a hash of their index (`heldout_frac`), so the retrieval
database of both splits is the training documents (the paper's setting: evaluation documents are not
in the database).

A neighbour as the model reads it is R = 2M tokens: the retrieved chunk and the next chunk of the same
document (its continuation), padded when the document ends there.

Shapes: B batch, L length, C chunks (L / M), M chunk length, K neighbours, R retrieved length.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from util.runinfo import atomic_path, atomic_write_json

META = "meta.json"


def heldout_docs(num_docs: int, frac: float) -> np.ndarray:
    """bool [num_docs]: a deterministic hash split of documents (Knuth multiplicative hash)."""
    h = (np.arange(num_docs, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return (h.astype(np.float64) / 2**32) < frac


def filter_neighbours(
    cand: np.ndarray, own_doc: np.ndarray, doc: np.ndarray, banned_doc: np.ndarray, k: int
) -> np.ndarray:
    """cand: [n, k'] candidate chunk ids (best first, -1 padded); own_doc: [n] -> [n, k] kept ids, -1 padded.

    Drops padding, chunks of the query's own document and chunks of banned (held-out) documents."""
    out = np.full((cand.shape[0], k), -1, np.int64)
    valid = cand >= 0
    cdoc = np.where(valid, doc[np.where(valid, cand, 0)], -1)
    keep = valid & (cdoc != own_doc[:, None]) & ~banned_doc[np.maximum(cdoc, 0)]
    for i in range(cand.shape[0]):
        row = cand[i][keep[i]][:k]
        out[i, : len(row)] = row
    return out


def write_store(
    out: str | os.PathLike,
    chunks: np.ndarray,
    doc: np.ndarray,
    neighbours: np.ndarray,
    chunk_bytes: np.ndarray,
    meta: dict,
) -> Path:
    """Write a neighbour store from in-memory arrays (used by tests and small corpora); meta.json last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, arr, dt in (
        ("chunks", chunks, np.int32),
        ("doc", doc, np.int64),
        ("neighbours", neighbours, np.int64),
        ("chunk_bytes", chunk_bytes, np.int32),
    ):
        with atomic_path(out / f"{name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(arr, dt))
    meta = {
        "num_chunks": int(len(chunks)),
        "chunk_len": int(chunks.shape[1]),
        "k": int(neighbours.shape[1]),
        **meta,
    }
    atomic_write_json(out / META, meta)
    return out


def precompute_neighbours(
    index_dir: str | os.PathLike,
    out: str | os.PathLike,
    k: int = 2,
    heldout_frac: float = 0.05,
    method: str = "bm25",
    overfetch: int = 16,
    batch: int = 2048,
    quiet: bool = False,
) -> dict:
    """Retrieve K neighbours for every chunk of an index (docs/INDEX_API.md) and write a store.

    method: "bm25" (search_bm25_tokens) or "static" (search_static_tokens). `overfetch` extra candidates
    are asked for so K survive the same-document and held-out filters. Returns meta.
    """
    from tqdm import tqdm

    from index import Index

    idx = Index.open(index_dir)
    n, m = idx.num_chunks, idx.chunk_len
    search = {"bm25": idx.search_bm25_tokens, "static": idx.search_static_tokens}.get(method)
    if search is None:
        raise ValueError(f"neighbour method {method!r}: expected bm25 or static")
    chunks = np.zeros((n, m), np.int32)
    doc = np.zeros(n, np.int64)
    nbytes = np.zeros(n, np.int32)
    for s in tqdm(range(0, n, batch), desc="read chunks", unit="batch", disable=quiet):
        ids = np.arange(s, min(n, s + batch))
        chunks[ids] = idx.chunk_tokens(ids)
        doc[ids] = idx.chunk_doc(ids)
        nbytes[ids] = [len(t.encode("utf-8")) for t in idx.chunk_text(ids)]
    banned = heldout_docs(idx.num_docs, heldout_frac)
    nbr = np.full((n, k), -1, np.int64)
    bar = tqdm(total=n, desc=f"retrieve ({method})", unit="chunk", disable=quiet)
    for s in range(0, n, batch):
        ids = np.arange(s, min(n, s + batch))
        cand, _ = search(chunks[ids], k + overfetch)
        nbr[ids] = filter_neighbours(np.asarray(cand, np.int64), doc[ids], doc, banned, k)
        bar.update(len(ids))
    bar.close()
    tok = idx.tokenizer
    meta = {
        "index": str(Path(index_dir).resolve()),
        "method": method,
        "heldout_frac": heldout_frac,
        "pad_id": int(tok.pad_id),
        "vocab_size": int(tok.vocab_size),
        "num_docs": int(idx.num_docs),
        "found_fraction": float((nbr >= 0).mean()),
    }
    write_store(out, chunks, doc, nbr, nbytes, meta)
    return json.loads((Path(out) / META).read_text())


class NeighbourStore:
    """Read side of a neighbour store: memmaps and batches of tokens [B, L] and neighbours [B, C, K, R]."""

    def __init__(self, path: str | os.PathLike):
        """Open `path`; a missing meta.json means the store is incomplete."""
        self.path = Path(path)
        if not (self.path / META).is_file():
            raise FileNotFoundError(f"{self.path}: not a neighbour store (no {META}; run `retro neighbours`)")
        self.meta = json.loads((self.path / META).read_text())
        self.chunks = np.load(self.path / "chunks.npy", mmap_mode="r")
        self.doc = np.load(self.path / "doc.npy", mmap_mode="r")
        self.neighbours = np.load(self.path / "neighbours.npy", mmap_mode="r")
        self.chunk_bytes = np.load(self.path / "chunk_bytes.npy", mmap_mode="r")
        self.chunk_len = int(self.meta["chunk_len"])
        self.pad_id = int(self.meta.get("pad_id", 0))
        num_docs = int(self.meta.get("num_docs", int(self.doc.max()) + 1 if len(self.doc) else 0))
        self.heldout = heldout_docs(num_docs, float(self.meta.get("heldout_frac", 0.0)))

    def split_ids(self, split: str) -> np.ndarray:
        """Chunk ids of the "train" or "heldout" documents, in corpus order."""
        held = self.heldout[np.asarray(self.doc)]
        if split not in ("train", "heldout"):
            raise ValueError(f"split {split!r}: expected train or heldout")
        return np.flatnonzero(~held if split == "train" else held)

    def sequences(self, split: str, seq_len: int) -> np.ndarray:
        """[S, C] chunk ids: consecutive chunks of the split, cut into sequences of L = C*M tokens."""
        if seq_len % self.chunk_len:
            raise ValueError(f"seq_len {seq_len} must be a multiple of the chunk length {self.chunk_len}")
        c = seq_len // self.chunk_len
        ids = self.split_ids(split)
        return ids[: len(ids) // c * c].reshape(-1, c)

    def neighbour_tokens(self, nids: np.ndarray, r: int) -> np.ndarray:
        """nids: [..., K] chunk ids (-1 = none) -> [..., K, R] tokens: chunk + same-document continuation."""
        m, n = self.chunk_len, len(self.chunks)
        flat = nids.reshape(-1)
        ok = flat >= 0
        safe = np.where(ok, flat, 0)
        nxt = np.minimum(safe + 1, n - 1)
        same = ok & (safe + 1 < n) & (self.doc[nxt] == self.doc[safe])
        toks = np.concatenate([self.chunks[safe], self.chunks[nxt]], axis=1)  # [n, 2M]
        toks[:, m:][~same] = self.pad_id
        toks[~ok] = self.pad_id
        if r <= 2 * m:
            toks = toks[:, :r]
        else:
            toks = np.pad(toks, ((0, 0), (0, r - 2 * m)), constant_values=self.pad_id)
        return toks.reshape(*nids.shape, r).astype(np.int32)

    def batch(self, seq_chunk_ids: np.ndarray, k: int, r: int) -> tuple[np.ndarray, np.ndarray]:
        """seq_chunk_ids: [B, C] -> tokens [B, L] int32 and neighbours [B, C, K, R] int32 (K may be 0)."""
        b, c = seq_chunk_ids.shape
        tokens = np.asarray(self.chunks[seq_chunk_ids.reshape(-1)]).reshape(b, c * self.chunk_len)
        if k > self.neighbours.shape[1]:
            raise ValueError(f"k={k} but the store holds {self.neighbours.shape[1]} neighbours per chunk")
        nids = np.asarray(self.neighbours[seq_chunk_ids.reshape(-1)])[:, :k].reshape(b, c, k)
        return tokens.astype(np.int32), self.neighbour_tokens(nids, r)

    def batches(
        self, split: str, batch_size: int, seq_len: int, k: int, r: int, seed: int = 0, start_step: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless shuffled batches (tokens [B, L], neighbours [B, C, K, R]); `start_step` skips ahead
        deterministically so a resumed run sees the batches it would have seen."""
        seqs = self.sequences(split, seq_len)
        if len(seqs) < batch_size:
            raise ValueError(
                f"{self.path}: {len(seqs)} {split} sequences of {seq_len} tokens < batch {batch_size}"
            )
        per_epoch = len(seqs) // batch_size
        step = start_step
        while True:
            epoch, i = divmod(step, per_epoch)
            order = np.random.default_rng(seed + epoch).permutation(len(seqs))
            yield self.batch(seqs[order[i * batch_size : (i + 1) * batch_size]], k, r)
            step += 1
