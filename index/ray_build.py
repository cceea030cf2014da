"""`retro index build --engine ray`: the same build, with each shard written by a Ray task.

The driver does what is sequential in a build and cheap next to a shard: it plans, makes the shared
parts (tokenizer, static embedder, FAISS template; index/shared.py), reads and tokenizes the corpus,
cuts documents into shard buffers, numbers the shards and their first documents, and at the end
writes the expansion table and the manifest, last (index/build.py, unchanged). What costs minutes
per shard, `index.shard.write_shard` (BM25, static vectors in FAISS, dense vectors, checksums), runs
as a Ray task with the buffer as its argument, so shards build on every CPU of the cluster while the
driver tokenizes the next one. It is the very function the local build calls, on the same buffer,
tokenizer, static embedder and template, so the index is the same byte for byte
(tests/test_ray_engine.py).

Failures: a worker that dies mid-shard (killed, out of memory, its node lost) is retried by Ray
(`max_retries`); the shard writes into a hidden folder renamed into place only when whole
(util/runinfo.atomic_path), so the retry starts clean. A driver that dies leaves build.json and the
finished shards: rerunning the command resumes after the longest run of finished shards from
000000 (a later shard that finished out of order is rebuilt, to the same bytes). An error inside a
task (bad input) is not retried: it surfaces as the same one-line error as the local build's.

Memory: at most `max_in_flight` shard buffers wait in the object store or build at once (default:
the cluster's CPUs), each a local shard's worth. Measured against the local build on the same 2
cores (BENCHMARKS.md, "Ray engine (issue 12)"): 1.25x its wall time at 2.6M tokens in 7 shards,
Ray's own start included, with identical bytes.

Every node needs retro installed and the index folder at the same path (a shared file system).
"""

from __future__ import annotations

import functools
from pathlib import Path

from index.build import _Builder
from index.shard import ShardBuffer

MAX_RETRIES = 3  # attempts after the first when a worker dies mid-shard (Ray's own retry)


@functools.lru_cache(maxsize=4)
def _shared_parts(out: str, tokenizer_sha256: str):
    """(tokenizer, static embedder) of the index at `out`, loaded once per worker process."""
    from index.embedders import load_static
    from index.tokenizer import Tokenizer

    tokenizer = Tokenizer(Path(out) / "tokenizer.model")
    if tokenizer.sha256 != tokenizer_sha256:
        raise ValueError(f"{out}/tokenizer.model: changed since this build started; delete {out} and rebuild")
    return tokenizer, load_static(Path(out) / "static", tokenizer)


def write_shard_task(
    out: str,
    name: str,
    buffer: ShardBuffer,
    doc_start: int,
    docs_read: int,
    bm25_params: dict,
    dense_id: str | None,
    tokenizer_sha256: str,
) -> dict:
    """One shard, in a Ray worker: `index.shard.write_shard` as the local build calls it. Returns
    its shard.json with its name, as `_Builder._write` does."""
    from index.embedders import load_dense
    from index.shard import write_shard

    tokenizer, static = _shared_parts(out, tokenizer_sha256)
    meta = write_shard(
        Path(out) / "shards" / name,
        buffer,
        doc_start=doc_start,
        tokenizer=tokenizer,
        static=static,
        faiss_template=Path(out) / "faiss.template",
        bm25_params=bm25_params,
        dense_model=load_dense(dense_id) if dense_id else None,
        quiet=True,
        docs_read=docs_read,
    )
    return dict(meta, name=name)


class RayBuilder(_Builder):
    """`_Builder` whose shards are Ray tasks; everything else (plan, resume, manifest) is inherited."""

    def __init__(self, *args, address: str | None = None, max_in_flight: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.address = address
        self.max_in_flight = max_in_flight
        self._pending: list = []  # refs of shard tasks not known to be finished

    def run(self, plan: dict) -> dict:
        from util.ray_cluster import connect, task_env

        ray = connect(self.address)
        if self.max_in_flight is None:
            self.max_in_flight = max(1, int(ray.cluster_resources().get("CPU", 1)))
        options = dict(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False, **task_env())
        self._task = ray.remote(write_shard_task).options(**options)
        return super().run(plan)

    def _dense_for_shards(self, dense_on: bool):
        return self.dense_id() if dense_on else None  # each worker loads it (once per process)

    def _close(self, progress, buffer, shard_no, doc_start, dense_model, docs_read):
        """Hand the shard to a Ray task; wait first while `max_in_flight` are pending."""
        import ray

        while len(self._pending) >= self.max_in_flight:
            progress.set_postfix_str(f"{len(self._pending)} shards building")
            ready, self._pending = ray.wait(self._pending, num_returns=1)
            self._result(ready[0])  # a failed shard stops the build now, not after the whole corpus
        name = f"{shard_no:06d}"
        ref = self._task.remote(
            str(self.out),
            name,
            buffer,
            doc_start,
            docs_read,
            self.bm25_params(),
            dense_model,
            self.tokenizer.sha256,
        )
        self._pending.append(ref)
        progress.set_postfix_str(f"shard {name} sent to Ray")
        return ref

    def _settle(self, done: list) -> list[dict]:
        """Every shard's shard.json, in shard order: finished ones from an earlier run as they are,
        the rest from their tasks (finished shards stay when one failed: a rerun resumes)."""
        out = [item if isinstance(item, dict) else self._result(item) for item in done]
        self._pending = []
        return out

    def _result(self, ref) -> dict:
        """A shard task's shard.json; a task that raised gives the local build's one-line error, one
        whose workers died every time an OSError saying so."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as e:  # the task itself raised: the error the local build would give
            if isinstance(e.cause, (ValueError, OSError)):
                raise e.cause from None
            raise
        except RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OSError(
                f"{self.out}: a shard's Ray task failed {MAX_RETRIES + 1} times ({first}); rerun the "
                "command to resume the build"
            ) from None
