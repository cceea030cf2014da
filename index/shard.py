"""One shard of the index: its documents, 64-token chunks, and the tiers built over them.

A shard folder holds plain files (numpy arrays readable with `np.load(mmap_mode="r")`):

    tokens.npy       uint16/uint32 [C, M]  chunk i of a document = its tokens [M*i, M*i+M), pad-filled
    chunk_doc.npy    int32 [C]             the chunk's document, as a row of docs.jsonl
    chunk_span.npy   int32 [C, 3]          token_start, char_start, char_end within that document's text
                                            (int64 when a value does not fit, and in indexes built before:
                                            readers take the file's dtype; 12 bytes a chunk, 0.19 B/token)
    docs.jsonl       one line per document: doc_id, source, line, char_offset, tokens, chunks, first_chunk
    doc_hash.npy     uint64 [D, 2]          each document's text digest, so an append skips documents
                                            already present (index/dedup.py)
    bm25/            bm25s index over each chunk's neighbour text (chunk + continuation; index/bm25.py)
    static.faiss     FAISS index of the static chunk vectors (cosine = inner product of unit vectors)
    dense.npy        float16 [C, D] dense vectors (only when the index has the dense tier)
    shard.json       counts, the document range it covers, how many corpus documents had been read when
                     it closed (where a resumed build continues), every file's size and sha256 (last)

A shard is built in a hidden temporary folder beside it and renamed into place when complete
(`util.runinfo.atomic_path`), so a shard folder is always whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from index.bm25 import write_bm25
from index.corpus import Document
from index.dedup import HASH_FILE, text_digests
from index.tokenizer import sha256_file
from util.progress import kill_point
from util.runinfo import atomic_path, atomic_write_json

SHARD_FORMAT = 1


@dataclasses.dataclass
class ShardBuffer:
    """Documents and chunks gathered for the shard being built."""

    chunk_len: int
    docs: list[dict] = dataclasses.field(default_factory=list)
    tokens: list[np.ndarray] = dataclasses.field(default_factory=list)  # [c, M] blocks
    chunk_doc: list[np.ndarray] = dataclasses.field(default_factory=list)
    spans: list[np.ndarray] = dataclasses.field(default_factory=list)
    digests: list[np.ndarray] = dataclasses.field(default_factory=list)  # uint64 [2] per document
    num_chunks: int = 0
    num_tokens: int = 0

    def add(self, doc: Document, ids: list[int], tokenizer, digest: np.ndarray | None = None) -> None:
        """Cut one tokenized document into chunks and append them. `digest`: its text's digest, when
        the caller has it already (index/dedup.py)"""
        m = self.chunk_len
        n = len(ids)
        c = -(-n // m)
        block = np.full((c, m), tokenizer.pad_id, dtype=tokenizer.dtype)
        block.reshape(-1)[:n] = ids
        token_start = np.arange(c, dtype=np.int64) * m
        char_bounds = _char_offsets(doc.text, np.asarray(ids, np.int64), tokenizer.byte_lengths, m)
        span = np.stack([token_start, char_bounds[:-1], char_bounds[1:]], axis=1)
        local_doc = len(self.docs)
        self.docs.append(
            {
                "doc_id": doc.doc_id,
                "source": doc.source,
                "line": doc.line,
                "char_offset": doc.char_offset,
                "tokens": n,
                "chunks": c,
                "first_chunk": self.num_chunks,
            }
        )
        self.tokens.append(block)
        self.chunk_doc.append(np.full(c, local_doc, np.int32))
        self.spans.append(span)
        self.digests.append(text_digests([doc.text])[0] if digest is None else np.asarray(digest, np.uint64))
        self.num_chunks += c
        self.num_tokens += n


def _char_offsets(text: str, ids: np.ndarray, byte_lengths: np.ndarray, m: int) -> np.ndarray:
    """int64 [c+1]: character offsets of the chunk boundaries (every m tokens) in `text`."""
    byte_ends = np.concatenate([[0], np.cumsum(byte_lengths[ids])])
    bounds = byte_ends[np.r_[np.arange(0, len(ids), m), len(ids)]]
    if text.isascii():
        return np.minimum(bounds, len(text))
    raw = np.frombuffer(text.encode("utf-8"), np.uint8)
    # character index of each byte offset = number of UTF-8 lead bytes before it
    lead = np.concatenate([[0], np.cumsum((raw & 0xC0) != 0x80)])
    return lead[np.minimum(bounds, len(raw))]


def narrow_spans(spans: np.ndarray) -> np.ndarray:
    """int32 [C, 3] when every offset fits (documents under 2 GiB characters), else int64 unchanged."""
    fits = spans.size == 0 or int(spans.max()) <= np.iinfo(np.int32).max
    return spans.astype(np.int32) if fits else spans


def next_in_doc(chunk_doc: np.ndarray) -> np.ndarray:
    """int64 [C]: i + 1 where chunk i's continuation in the same document is the next row, else -1."""
    return np.where(np.r_[chunk_doc[1:] == chunk_doc[:-1], False], np.arange(1, len(chunk_doc) + 1), -1)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


def _write_static(path: Path, tokens: np.ndarray, static, faiss_template: Path) -> None:
    import faiss

    ann = faiss.read_index(str(faiss_template))
    ann.add(static.embed_tokens(tokens))
    faiss.write_index(ann, str(path))


def write_shard(
    folder: Path,
    buffer: ShardBuffer,
    *,
    doc_start: int,
    tokenizer,
    static,
    faiss_template: Path,
    bm25_params: dict,
    dense_model=None,
    quiet: bool = True,
    docs_read: int | None = None,
    status=None,
) -> dict:
    """Build every tier over `buffer` and write the shard to `folder` atomically. Returns shard.json.

    docs_read: corpus documents read when the shard closed (skipped ones included), recorded so a
    resumed build knows where to continue. status: called with the name of each step, so a progress
    bar can say what a long shard write is doing."""
    with atomic_path(folder, folder=True) as tmp:
        meta = _write_tiers(
            tmp,
            buffer,
            doc_start=doc_start,
            tokenizer=tokenizer,
            static=static,
            faiss_template=faiss_template,
            bm25_params=bm25_params,
            dense_model=dense_model,
            quiet=quiet,
            docs_read=docs_read,
            status=status or (lambda step: None),
        )
        kill_point("shard")  # crash tests: every file written, the folder not yet renamed into place
        return meta


def _write_tiers(
    tmp,
    buffer,
    *,
    doc_start,
    tokenizer,
    static,
    faiss_template,
    bm25_params,
    dense_model,
    quiet,
    docs_read,
    status,
) -> dict:
    """Every file of a shard, into the (temporary) folder `tmp`; shard.json last."""
    from index.embedders import encode_dense

    status("tokens")
    tokens = np.concatenate(buffer.tokens)
    _save_npy(tmp / "tokens.npy", tokens)
    chunk_doc = np.concatenate(buffer.chunk_doc)  # [C]
    _save_npy(tmp / "chunk_doc.npy", chunk_doc)
    _save_npy(tmp / "chunk_span.npy", narrow_spans(np.concatenate(buffer.spans)))
    with open(tmp / "docs.jsonl", "w", encoding="utf-8") as f:
        for d in buffer.docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _save_npy(tmp / HASH_FILE, np.stack(buffer.digests).astype(np.uint64))

    status("static ANN + BM25")
    # the static tier (numpy/FAISS, GIL released) runs beside the BM25 tier (Python) on the second core
    with ThreadPoolExecutor(1) as pool:
        static_done = pool.submit(_write_static, tmp / "static.faiss", tokens, static, faiss_template)
        texts = tokenizer.decode_rows(tokens)  # exact chunk text: decoding is lossless
        next_chunk = next_in_doc(chunk_doc)
        (tmp / "bm25").mkdir()
        kill_point("bm25")
        write_bm25(tmp / "bm25", texts, next_chunk, **bm25_params)
        static_done.result()

    if dense_model is not None:
        status("dense vectors")
        vectors = encode_dense(dense_model, texts, quiet=quiet, desc="dense vectors")
        _save_npy(tmp / "dense.npy", vectors.astype(np.float16))

    status("checksums")
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(tmp))] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    meta = {
        **({"docs_read": docs_read} if docs_read is not None else {}),
        "format": SHARD_FORMAT,
        "docs": len(buffer.docs),
        "chunks": buffer.num_chunks,
        "tokens": buffer.num_tokens,
        "doc_start": doc_start,
        "dense": dense_model is not None,
        "files": files,
    }
    atomic_write_json(tmp / "shard.json", meta)
    return meta


def read_shard_meta(folder: Path) -> dict | None:
    """shard.json of a complete shard, or None when the folder is missing or incomplete."""
    meta = folder / "shard.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_shard_files(folder: Path, meta: dict, *, hashes: bool = False) -> str | None:
    """None when every file listed in shard.json is there with its size (and sha256 if `hashes`)."""
    for name, want in meta["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{path}: missing"
        if path.stat().st_size != want["bytes"]:
            return f"{path}: size {path.stat().st_size} != recorded {want['bytes']}"
        if hashes and sha256_file(path) != want["sha256"]:
            return f"{path}: sha256 differs from shard.json"
    return None
