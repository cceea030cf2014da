"""Which documents an index already holds, by content hash: appending a corpus twice must not double it.

Every shard stores `doc_hash.npy`, uint64 [D, 2]: the 128-bit BLAKE2b digest of each document's text
(the text the corpus reader gave, so the same file or jsonl line appended again has the same digest).
An `--append` loads the digests of the index's shards once (16 bytes a document, sorted) and skips a
new document whose digest is there; `--keep-duplicates` turns the check off. A shard built before the
digests existed has its documents' texts decoded from the stored tokens (the tokenizer is lossless)
and hashed, so such an index is checked too, only more slowly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

HASH_FILE = "doc_hash.npy"
DUPLICATE = "already in the index (skipped; --keep-duplicates adds it again)"


def text_digests(texts: list[str]) -> np.ndarray:
    """uint64 [n, 2]: the 128-bit BLAKE2b digest of each text's UTF-8 bytes."""
    out = np.empty((len(texts), 2), np.uint64)
    for i, text in enumerate(texts):
        raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        out[i] = np.frombuffer(raw, "<u8")
    return out


def _decoded_digests(folder: Path, tokenizer) -> np.ndarray:
    """Digests of a shard without doc_hash.npy: each document's text decoded from its chunks."""
    tokens = np.load(folder / "tokens.npy", mmap_mode="r")
    with open(folder / "docs.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    texts = [
        tokenizer.decode(np.asarray(tokens[d["first_chunk"] : d["first_chunk"] + d["chunks"]]).reshape(-1))
        for d in docs
    ]
    return text_digests(texts)


def shard_digests(folder: Path, tokenizer) -> np.ndarray:
    """uint64 [D, 2]: the digests of a shard's documents, in its docs.jsonl order."""
    path = folder / HASH_FILE
    if path.is_file():
        return np.load(path)
    return _decoded_digests(folder, tokenizer)


class DocDigests:
    """A sorted set of document digests with a vectorised membership test (16 bytes a document)."""

    def __init__(self, digests: np.ndarray) -> None:
        digests = np.asarray(digests, np.uint64).reshape(-1, 2)
        order = np.lexsort((digests[:, 1], digests[:, 0]))
        self._hi = np.ascontiguousarray(digests[order, 0])
        self._lo = np.ascontiguousarray(digests[order, 1])

    def __len__(self) -> int:
        return len(self._hi)

    @classmethod
    def of_shards(cls, folders: list[Path], tokenizer) -> DocDigests:
        """The digests of every document in `folders` (an index's shards)."""
        parts = [shard_digests(f, tokenizer) for f in folders]
        return cls(np.concatenate(parts) if parts else np.zeros((0, 2), np.uint64))

    def contains(self, digests: np.ndarray) -> np.ndarray:
        """bool [n]: which of `digests` (uint64 [n, 2]) are in the set."""
        digests = np.asarray(digests, np.uint64).reshape(-1, 2)
        start = np.searchsorted(self._hi, digests[:, 0], side="left")
        stop = np.searchsorted(self._hi, digests[:, 0], side="right")
        found = np.zeros(len(digests), bool)
        for i in np.flatnonzero(stop > start):  # almost always one candidate: the first halves match
            found[i] = bool((self._lo[start[i] : stop[i]] == digests[i, 1]).any())
        return found
