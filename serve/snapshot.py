"""Immutable, warmed snapshots of an index, and the watcher that swaps in a new one after an append.

Why snapshots: `retro index build MORE --out IDX --append` may run while the server answers. An
append writes new shards beside the old ones and replaces index.json last (atomically), and it never
modifies an old shard; so an `Index` opened on one manifest stays valid and consistent for as long as
anyone holds it. The server holds one `Snapshot` (the opened Index, its Cascade, warmed); a request
takes the current one once and runs every hop on it, so it sees one generation from start to end.

The watcher polls index.json's (inode, mtime_ns, size) every `watch_s` seconds. On a change it opens
the new manifest, warms it completely (every shard's BM25, FAISS and document table, the expansion
vocabulary of the new words, two whole searches) and only then swaps the reference, so no request pays
for the new snapshot's lazy loads, and no lazy load (none of which is thread-safe) ever runs while
requests use the snapshot. Requests in flight finish on the snapshot they started with; the old one
is freed when the last of them lets go.

The dense encoder (MiniLM and its LRU cache of chunk encodings, keyed by global chunk id) is shared by
the snapshots of one index: an append keeps every old chunk id and text, so a cached encoding stays
right. A manifest whose shards do not start with the old ones (the index was rebuilt in place) gets
a fresh encoder cache.

`generation` is index.json's integer `generation` field (an append increments it; 0 when absent);
`serial` counts the snapshots this server opened (1 for the first).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from index import Index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig

# whole searches at warm-up, at the config's k: a literal and a paraphrase-like question, so every
# per-query path (neighbour and sentence scoring, expansion, the batch shapes of on-demand encoding)
# has run once before the first request
WARM_QUERIES = ("how does this work", "What is the special value mentioned in the provided text?")


def manifest_signature(path: Path) -> tuple[int, int, int]:
    """(inode, mtime_ns, size) of IDX/index.json: an atomic rename changes the inode."""
    st = os.stat(path / "index.json")
    return st.st_ino, st.st_mtime_ns, st.st_size


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One opened, warmed generation of the index; never changes once made."""

    index: Index  # opened on one manifest
    cascade: Cascade  # over `index`, warmed
    generation: int  # index.json's `generation` (0 when absent)
    serial: int  # 1 for the first snapshot this server opened, +1 per swap
    signature: tuple[int, int, int]  # index.json's (inode, mtime_ns, size) before it was read
    warm_s: float  # seconds opening and warming took
    opened: float = field(default_factory=time.time)  # when it was made (epoch seconds)

    def shard_names(self) -> list[str]:
        return [s["name"] for s in self.index.manifest["shards"]]

    def info(self) -> dict:
        """What GET /v1/index reports about this snapshot."""
        ix = self.index
        return {
            "path": str(ix.path),
            "generation": self.generation,
            "snapshot": self.serial,
            "docs": ix.num_docs,
            "tokens": ix.num_tokens,
            "chunks": ix.num_chunks,
            "shards": len(ix.manifest["shards"]),
            "dense": ix.has_dense,
            "medium_mode": self.cascade.medium_mode,
            "opened": round(self.opened, 3),
            "warm_s": round(self.warm_s, 3),
        }


def _warm_index(index: Index) -> None:
    """Load every shard's document table (provenance reads it lazily, per shard)."""
    starts, at = [], 0
    for s in index.manifest["shards"]:
        if s["chunks"]:
            starts.append(at)
        at += s["chunks"]
    if starts:
        index.provenance(starts)


def open_snapshot(
    path: str | os.PathLike,
    cfg: CascadeConfig,
    serial: int = 1,
    previous: Snapshot | None = None,
    opener=Index.open,
) -> Snapshot:
    """Open the index at `path`, build its cascade and warm everything a request would load lazily.
    The encoder of `previous` is shared when the new manifest extends its shards (an append)."""
    t0 = time.perf_counter()
    path = Path(path)
    signature = manifest_signature(path)
    index = opener(path)  # Index.open, or pipelines.ray_search.open_index for --engine ray
    encoder = None
    if previous is not None and previous.cascade.needs_dense_model:
        old = previous.shard_names()
        if [s["name"] for s in index.manifest["shards"]][: len(old)] == old:
            encoder = previous.cascade.encoder  # an append: old chunk ids keep their text
    cascade = Cascade(index, cfg, encoder=encoder)
    cascade.warm()  # BM25 and FAISS of every shard, the static model, MiniLM, the expansion table
    _warm_index(index)
    for query in WARM_QUERIES:
        cascade.search(query, k=min(cfg.k, index.num_chunks))
    generation = index.manifest.get("generation", 0)
    return Snapshot(
        index=index,
        cascade=cascade,
        generation=int(generation) if isinstance(generation, int) else 0,
        serial=serial,
        signature=signature,
        warm_s=time.perf_counter() - t0,
    )


class Live:
    """The current snapshot of one index, replaced by a warmed new one when index.json changes."""

    def __init__(self, path: str | os.PathLike, cfg: CascadeConfig, watch_s: float = 1.0, opener=Index.open):
        """`opener`: opens each snapshot's index (Index.open; the Ray engine's open_index)."""
        self.path, self.cfg, self.watch_s, self.opener = Path(path), cfg, watch_s, opener
        self.current = open_snapshot(
            self.path, cfg, opener=opener
        )  # read once per request: a reference swap is atomic
        self.last_error: str | None = None  # why the last reopen failed (the old snapshot kept serving)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: when index.json changed, open and warm the new snapshot, then swap it in.
        Returns whether a new snapshot was swapped in. A failed reopen keeps the old snapshot and is
        retried at the next change of index.json."""
        cur = self.current
        try:
            signature = manifest_signature(self.path)
        except OSError as e:  # index.json briefly absent or unreadable: keep serving
            self.last_error = f"{self.path / 'index.json'}: {e.strerror or e}"
            return False
        if signature == cur.signature:
            return False
        try:
            new = open_snapshot(self.path, self.cfg, serial=cur.serial + 1, previous=cur, opener=self.opener)
        except (ValueError, OSError) as e:
            self.last_error = f"reopening {self.path}: {e}"
            print(f"retro serve: {self.last_error}; still serving snapshot {cur.serial}", file=sys.stderr)
            self.current = _with_signature(cur, signature)  # do not retry the same manifest every poll
            return False
        self.current, self.last_error = new, None
        print(
            f"retro serve: snapshot {new.serial} (generation {new.generation}, {new.index.num_chunks} "
            f"chunks) swapped in after {new.warm_s:.1f} s of warm-up",
            file=sys.stderr,
            flush=True,
        )
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.watch_s):
            try:
                self.check()
            except Exception as e:  # never let the watcher die silently: say it, keep serving
                self.last_error = f"watcher: {type(e).__name__}: {e}"
                print(f"retro serve: {self.last_error}", file=sys.stderr, flush=True)

    def start(self) -> None:
        """Watch index.json in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retro-serve-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _with_signature(snap: Snapshot, signature: tuple[int, int, int]) -> Snapshot:
    """The same snapshot, marked as having seen `signature` (so a bad manifest is not reopened every poll)."""
    import dataclasses

    return dataclasses.replace(snap, signature=signature)
