"""`retro search / ask / serve --engine ray`: the shards' query work in Ray actors, the merge in the driver.

`RayIndex` is an `index.Index` whose per-shard query work runs in `ShardActor`s; everything else is
the Index the cascade already reads (the manifest, the tokenizer, chunk text and provenance through
memory maps, the expansion table), so `pipelines.cascade.Cascade` runs on it unchanged. Every search
of the Index goes through `Index.search_lists` (index/lists.py), which touches the shards in two
methods this class overrides:

    _bm25_df     each term's document frequency: the driver sums the shards' into the global idf
    _shard_jobs  every list's per-shard part (weighted BM25 top-k under that idf, static FAISS
                 top-k), all of a question's lists in one call per actor

An actor opens its shards once (BM25 arrays memory-mapped, FAISS read) and answers with the very
function the local path runs (`index.lists.run_jobs`); the driver adds each shard's chunk offset and
takes the top-k with `Index`'s own merge, so chunk ids and scores are those of the local path, bit
for bit (tests/test_ray_engine.py). A cascade hop asks for its three cheap lists together, so it
waits on the actors twice (frequencies of every list's terms, then every list), where it waited 5
times one list at a time; global idf needs every shard's counts before any shard can score, so two
is the floor while the driver does not know the terms. The driver keeps the frequencies it has
summed (an index never changes under a RayIndex), so a question whose terms were counted before
waits once. Measured (BENCHMARKS.md "Ray engine (issue 12)", bench/ray_engine.py, 2 shared cores,
13M tokens, 7 shards): the three lists together save 4-7 ms p50 over asking for them apart, with
1 actor or 2 (a bare round trip costs 1-3 ms at load 4-6), once an actor runs the ANN last
(index.lists.run_jobs); on the quiet box (load 2, 2 actors) a cascade hop's overhead over the same
search in process went from 26.0 to 17.5 ms p50 (paired per question, A B B A); at load 11-14 both
are lost in the noise.

The driver reads chunk text and provenance from the index folder itself (a few dozen rows a query),
so it needs the folder at the same path as the actors (a shared file system).

    from pipelines.ray_search import open_index
    index = open_index("IDX", engine="ray")          # a local cluster with this machine's CPUs
    Cascade(index).search("how do I list open files")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from index.lists import run_jobs
from index.store import Index, _Shard

DF_CACHE_TERMS = 1 << 20  # document frequencies the driver keeps (~100 MB at most); then it starts over


class ShardActor:
    """Some shards of one index, opened once; answers the per-shard parts of queries (run as a Ray
    actor by `RayIndex`). `shards`: [(index in the manifest, folder, first document)]."""

    def __init__(self, shards: list[tuple[int, str, int]]) -> None:
        self.positions = [s for s, _, _ in shards]
        self.shards = [_Shard(Path(folder), doc_base) for _, folder, doc_base in shards]

    def warm(self) -> list[int]:
        """Load every shard's BM25 arrays and FAISS index now; the positions held."""
        for sh in self.shards:
            _ = sh.bm25, sh.ann
        return self.positions

    def bm25_df(self, hashes: np.ndarray) -> np.ndarray:
        from index.bm25 import shard_dfs

        return shard_dfs([sh.bm25 for sh in self.shards], hashes)

    def run(self, jobs: list[tuple]) -> tuple[list[list], list[float]]:
        """`index.lists.run_jobs` over the held shards: every list of a question in one call (a job's
        candidates, when it has them, are local rows per held shard)."""
        return run_jobs(self.shards, jobs)


class RayIndex(Index):
    """An Index whose per-shard query work runs in Ray actors. Use `RayIndex.open(path, address=...)`
    or `open_index`. `actors`: how many (default: one per cluster CPU, at most one per shard)."""

    @classmethod
    def open(cls, path, *, address: str | None = None, actors: int | None = None, **kwargs) -> RayIndex:
        """`Index.open(path, **kwargs)`, then its shards spread over `actors` Ray actors."""
        return cls.fan_out(Index.open(path, **kwargs), address=address, actors=actors)

    @classmethod
    def fan_out(cls, index: Index, *, address: str | None = None, actors: int | None = None) -> RayIndex:
        """The opened `index` with its shards held by Ray actors on the cluster at `address` (None:
        the running session, or a new local one): one per cluster CPU by default, at most one per
        shard, shards dealt round-robin. Returns once every actor has opened its shards."""
        from util.ray_cluster import connect

        if actors is not None and actors < 1:
            raise ValueError(f"actors={actors}: must be >= 1")
        ray = connect(address)
        out = cls(index.path, index.manifest, index.tokenizer, index._shards)
        out.verified = index.verified
        n = len(out._shards)
        actors = max(1, min(actors or int(ray.cluster_resources().get("CPU", 1)), n))
        groups = [
            [(s, str(out._shards[s].folder), out._shards[s].doc_base) for s in range(a, n, actors)]
            for a in range(actors)
        ]
        # actors wait on queries (they hold no CPU idle), spread over the nodes
        remote = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(ShardActor)
        out._actors = [remote.remote(g) for g in groups]
        out._held = [[s for s, _, _ in g] for g in groups]  # the shard positions each actor answers for
        out._df_cache = {}  # term hash -> document frequency over every shard (the index is immutable)
        ray.get([a.warm.remote() for a in out._actors])  # every shard opened before the first query
        return out

    def _bm25_df(self, hashes: np.ndarray) -> np.ndarray:
        """Summed over the actors for the terms not counted before; the others from `_df_cache`."""
        import ray

        cache = self._df_cache
        keys = hashes.tolist()
        known = [cache.get(h) for h in keys]
        todo = [h for h, d in zip(keys, known, strict=True) if d is None]
        if todo:
            asked = np.array(todo, np.uint64)
            fresh = np.sum(ray.get([a.bm25_df.remote(asked) for a in self._actors]), axis=0, dtype=np.int64)
            counted = dict(zip(todo, fresh.tolist(), strict=True))
            if len(cache) + len(counted) > DF_CACHE_TERMS:
                cache.clear()
            cache.update(counted)
            known = [counted[h] if d is None else d for h, d in zip(keys, known, strict=True)]
        return np.array(known, np.int64).reshape(len(keys))

    def _shard_jobs(self, jobs: list[tuple]) -> tuple[list[list], list[float]]:
        """Every job to every actor in one call each (one wait); per job, its per-shard answers in
        manifest order and the seconds of the slowest actor on it."""
        import ray

        def held_jobs(held: list[int]) -> list[tuple]:
            return [(kind, args, None if c is None else [c[s] for s in held]) for kind, args, c in jobs]

        answers = ray.get([a.run.remote(held_jobs(h)) for a, h in zip(self._actors, self._held, strict=True)])
        parts: list[list] = [[None] * len(self._shards) for _ in jobs]
        seconds = [0.0] * len(jobs)
        for held, (per_job, secs) in zip(self._held, answers, strict=True):
            for j, answer in enumerate(per_job):
                for s, part in zip(held, answer, strict=True):
                    parts[j][s] = part
                seconds[j] = max(seconds[j], secs[j])
        return parts, seconds

    def close(self) -> None:
        """Stop the actors (they also stop when this object is garbage collected)."""
        import ray

        for a in getattr(self, "_actors", []):
            ray.kill(a)
        self._actors = []


def open_index(path: str | os.PathLike, engine: str = "local", address: str | None = None, **kwargs) -> Index:
    """The index at `path` for a cascade: `Index.open` (engine "local") or `RayIndex.open` (engine
    "ray", on the cluster at `address`; util/ray_cluster.py)."""
    from util.ray_cluster import check_engine

    check_engine(engine, address)
    if engine == "ray":
        return RayIndex.open(path, address=address, **kwargs)
    return Index.open(path, **kwargs)
