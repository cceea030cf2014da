"""Benchmark the Ray engine against the local one on the same machine: build wall time and fan-out overhead.

    python bench/ray_engine.py --work data/bench-ray --tokens 10e6 --shard-chunks 32768 --queries 40
    python bench/ray_engine.py --work data/bench-ray --tokens 10e6 --parts fanout   # one part only

In one run, on one needles haystack (evals/haystack.py, `--tokens` approximate tokens, 100 needles):
1. build wall time: `retro index build HAYSTACK --out ... --quiet` as a child process, local and
   `--engine ray` (which starts its own local cluster with the machine's CPUs, as a user's command
   does), interleaved A B B A after one uncounted local build (it trains the static table once; the
   others read it from the cache); each build's tree digest is compared with the first one's;
2. fan-out overhead: the same index opened in process (`Index`) and through Ray actors
   (`pipelines.ray_search.RayIndex` on `ray.init(num_cpus=CPUs)`), the same queries (the haystack's
   needle questions) in A B B A order per query, after one untimed run that fills the shared dense
   encoder's cache for all four, and with the RayIndex's document-frequency cache emptied before
   each Ray measure (every query is new to it): p50 of the Index API's cheap calls (search_bm25 +
   search_static, k = 100), of the cascade's cheap stage and of the whole cascade (one hop), and
   the overhead also paired (per question, its Ray runs' mean minus its local runs', median); the
   sequential round trips the Ray side made for each (its `ray.get` calls, counted); one bare
   round trip (a no-op call to as many actors, p50 of 100, before and after the queries: the
   floor a design can reach on this machine); every answer's chunk ids and scores compared, and
   the Ray side's answers digested (`answers_sha256`, equal across code versions that agree).
3. lists: the cheap stage's three lists asked of the same RayIndex together (one `search_lists`,
   2 waits) and apart (5 waits), A B B A per question, over 1 actor and over 2: the saving of
   the one-call-per-actor design alone, with no other code or process in between.
Prints a markdown table and writes results-PARTS[-LABEL].json into --work. Target (issue 12):
fan-out overhead <= 20 ms p50; a Ray build within 1.5x of the local build's wall time.

Two code versions side by side (the script is the same; PYTHONPATH picks the code, and the working
directory is neutral so that Ray's workers import the same tree as the driver), A B B A:

    cd /tmp && for v in before after after before; do
      PYTHONPATH=/path/to/$v python /path/to/bench/ray_engine.py --parts fanout --label $v-$((n+=1)); done
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _haystack(work: Path, tokens: int) -> tuple[Path, list[str]]:
    """corpus.jsonl of a needles haystack (made once per size) and its questions."""
    from evals.haystack import HaystackConfig, write_haystack
    from evals.needles import NeedleConfig, make_needles

    folder = work / f"haystack-{tokens}"
    needles = make_needles(NeedleConfig(), 100, 0)
    if not (folder / "corpus.jsonl").is_file():
        write_haystack(HaystackConfig(kind="needles", tokens=tokens), needles, folder)
    return folder / "corpus.jsonl", [s.question for s in needles.samples]


def _tree_digest(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("build-log"):
            h.update(str(p.relative_to(folder)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _build(corpus: Path, out: Path, engine: str, shard_chunks: int) -> dict:
    """One `retro index build` in a child process: wall seconds, shards, digest."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "pipelines.cli", "index", "build", str(corpus), "--out", str(out)]
    argv += ["--quiet", "--engine", engine, f"shard_chunks={shard_chunks}", "dense=off"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    seconds = time.perf_counter() - t0
    manifest = json.loads((out / "index.json").read_text())
    return {
        "engine": engine,
        "seconds": round(seconds, 1),
        "shards": len(manifest["shards"]),
        "tokens": manifest["counts"]["tokens"],
        "digest": _tree_digest(out),
    }


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


class _Noop:
    """An actor that does nothing: a call to it is the floor of any fan-out round trip."""

    def ping(self) -> None:
        return None


def _bare_round_trip(ray, actors: int, calls: int) -> float:
    """p50 ms of one no-op call to each of `actors` actors, gathered (one round trip, no work)."""
    remote = ray.remote(num_cpus=0)(_Noop)
    handles = [remote.remote() for _ in range(actors)]
    ray.get([h.ping.remote() for h in handles])  # started
    ms = []
    for _ in range(calls):
        t, _ = _timed(lambda: ray.get([h.ping.remote() for h in handles]))
        ms.append(t)
    for h in handles:
        ray.kill(h)
    return float(np.median(ms))


def _fan_out(index_path: Path, questions: list[str]) -> dict:
    """p50 latencies in process vs through Ray actors, per measure; the sequential round trips the
    Ray side made per measure (its `ray.get` calls: each waits on the actors once); a bare no-op
    round trip to as many actors; mismatches; and a digest of every answer (the same across code
    versions when the results are)."""
    import hashlib

    import ray

    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.ray_search import RayIndex

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    t0 = time.perf_counter()
    local = Cascade(Index.open(index_path), quiet=True)
    local.warm()
    warm_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    fanned = Cascade(RayIndex.open(index_path), encoder=local.encoder, quiet=True)
    fanned.warm()
    warm_ray = time.perf_counter() - t0
    actors = len(fanned.index._actors)
    bare_before = _bare_round_trip(ray, actors, 100)
    waits = [0]
    ray_get = ray.get

    def counted_get(*args, **kwargs):
        waits[0] += 1
        return ray_get(*args, **kwargs)

    ray.get = counted_get  # the RayIndex's module reads ray.get at each call
    sides = {"local": local, "ray": fanned}
    ms: dict[str, dict[str, list[float]]] = {s: {"api": [], "cheap": [], "cascade": []} for s in sides}
    trips: dict[str, list[int]] = {"api": [], "cascade": []}
    mismatches = 0
    digest = hashlib.sha256()
    for q in questions:
        local.search(q, hops=1)  # untimed: fills the shared encoder's cache, so every timed run reads it
        answers = {}
        for side in ("local", "ray", "ray", "local"):
            c = sides[side]
            if side == "ray":
                c.index._df_cache.clear()  # a question new to the cluster: every term counted again
            w0 = waits[0]
            api_ms, api = _timed(
                lambda c=c, q=q: (c.index.search_bm25(q, k=100), c.index.search_static(q, k=100))
            )
            w1 = waits[0]
            if side == "ray":
                c.index._df_cache.clear()
            total_ms, result = _timed(lambda c=c, q=q: c.search(q, hops=1))
            if side == "ray":
                trips["api"].append(w1 - w0)
                trips["cascade"].append(waits[0] - w1)
            ms[side]["api"].append(api_ms)
            ms[side]["cheap"].append(result.latency_ms["cheap"])
            ms[side]["cascade"].append(total_ms)
            answers[side] = (
                *api[0],
                *api[1],
                np.array([n.chunk for n in result.neighbours]),
                np.array([n.stages["cheap"].score for n in result.neighbours if "cheap" in n.stages]),
            )
        mismatches += not _same(answers["local"], answers["ray"])
        for a in answers["ray"]:
            digest.update(np.ascontiguousarray(a).tobytes())
    ray.get = ray_get
    bare_after = _bare_round_trip(ray, actors, 100)
    p50 = {s: {k: float(np.median(v)) for k, v in m.items()} for s, m in ms.items()}
    # per question: the mean of its two Ray runs minus the mean of its two local runs (A B B A), then
    # the median over questions: less noisy than a difference of two medians on a loaded machine
    paired = {
        k: float(np.median(np.subtract(ms["ray"][k], ms["local"][k]).reshape(-1, 2).mean(axis=1)))
        for k in ms["local"]
    }
    ray.shutdown()
    return {
        "queries": len(questions),
        "p50_ms": p50,
        "overhead_p50_ms": {k: p50["ray"][k] - p50["local"][k] for k in p50["local"]},
        "overhead_paired_p50_ms": paired,
        "ms": ms,
        "round_trips": {k: float(np.median(v)) for k, v in trips.items()},
        "bare_round_trip_p50_ms": {"before": bare_before, "after": bare_after, "actors": actors},
        "mismatches": mismatches,
        "answers_sha256": digest.hexdigest(),
        "open_and_warm_s": {"local": round(warm_local, 2), "ray": round(warm_ray, 2)},
    }


def _lists_together(index_path: Path, questions: list[str], actor_counts: tuple[int, ...] = (1, 2)) -> dict:
    """The change of one call per actor alone: the cheap stage's three lists (BM25, static, the
    expanded question at its default settings) asked of the same RayIndex together (one
    `search_lists`: 2 waits) and apart (one `search_lists` each: 5 waits), A B B A per question,
    the frequency cache emptied before each; with 1 actor (no parallel scan to offset the waits)
    and with 2. p50 ms of each and the paired saving (apart - together, per question, median)."""
    import ray

    from index import Index
    from index.lists import BM25Query, StaticQuery, WeightedQuery
    from pipelines.cascade import Cascade
    from pipelines.ray_search import RayIndex

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    expander = Cascade(Index.open(index_path), quiet=True).expander
    out = {}
    for actors in actor_counts:
        index = RayIndex.open(index_path, actors=actors)
        ms: dict[str, list[float]] = {"together": [], "apart": []}
        for q in questions:
            e = expander.expand(q)
            requests = [
                BM25Query(q, 100),
                StaticQuery(q, 100),
                WeightedQuery(dict(e.terms), 100, dict(e.groups)),
            ]
            for mode in ("together", "apart", "apart", "together"):
                index._df_cache.clear()
                t, _ = _timed(
                    lambda m=mode, r=requests, ix=index: (
                        ix.search_lists(r) if m == "together" else [ix.search_lists([x]) for x in r]
                    )
                )
                ms[mode].append(t)
        saved = np.subtract(ms["apart"], ms["together"]).reshape(-1, 2).mean(axis=1)
        out[str(actors)] = {
            "p50_ms": {m: float(np.median(v)) for m, v in ms.items()},
            "saved_paired_p50_ms": float(np.median(saved)),
            "bare_round_trip_p50_ms": _bare_round_trip(ray, actors, 100),
        }
        index.close()
    ray.shutdown()
    return {"queries": len(questions), "actors": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", type=Path, default=ROOT / "data" / "bench-ray", help="scratch and results folder"
    )
    ap.add_argument("--tokens", type=float, default=10e6, help="haystack size (approximate tokens)")
    ap.add_argument("--shard-chunks", type=int, default=32768, help="chunks per shard for both engines")
    ap.add_argument("--queries", type=int, default=40, help="needle questions timed (of 100)")
    ap.add_argument(
        "--parts",
        default="build,fanout",
        help="build (the A B B A builds), fanout (on the uncounted build's index, made if missing), "
        "lists (the cheap lists together vs apart over the same actors)",
    )
    ap.add_argument(
        "--label",
        default="",
        help="names this run's results file (results-PARTS-LABEL.json), e.g. before / after when the "
        "same script runs two code versions (PYTHONPATH) in turn",
    )
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    if a.tokens < 1e5 or a.shard_chunks < 1 or not 1 <= a.queries <= 100:
        raise SystemExit("--tokens >= 1e5, --shard-chunks >= 1, --queries in 1..100")
    a.work.mkdir(parents=True, exist_ok=True)
    corpus, questions = _haystack(a.work, int(a.tokens))
    search_index = a.work / "idx-search"
    cold = None
    if "build" in parts or not (search_index / "index.json").is_file():
        cold = _build(corpus, search_index, "local", a.shard_chunks)  # uncounted; kept for the fan-out
    runs = []
    if "build" in parts:
        engines = ("local", "ray", "ray", "local")
        runs = [_build(corpus, a.work / "idx-ab", e, a.shard_chunks) for e in engines]
        shutil.rmtree(a.work / "idx-ab", ignore_errors=True)
    fan = _fan_out(search_index, questions[: a.queries]) if "fanout" in parts else None
    lists = _lists_together(search_index, questions[: a.queries]) if "lists" in parts else None
    from util.runinfo import atomic_write_json, run_info

    manifest = json.loads((search_index / "index.json").read_text())
    tokens, shards = manifest["counts"]["tokens"], len(manifest["shards"])
    results = {
        "run": run_info(),
        "parts": sorted(parts),
        "tokens": tokens,
        "shards": shards,
        "shard_chunks": a.shard_chunks,
        "cpus": os.cpu_count(),
        "cold_local_build": cold,
        "builds": runs,
        "identical_indexes": bool(runs) and all(r["digest"] == cold["digest"] for r in runs),
        "fan_out": fan,
        "lists_together": lists,
    }
    import index as code

    results["label"] = a.label
    results["code"] = str(Path(code.__file__).resolve().parents[1])  # the tree PYTHONPATH named
    results["uptime"] = os.getloadavg()
    name = "-".join([*sorted(parts), *([a.label] if a.label else [])])
    atomic_write_json(a.work / f"results-{name}.json", results)
    print(
        f"code: {results['code']}\nneedles haystack: {tokens:,} tokens, {shards} shards, {os.cpu_count()} CPUs\n"
    )
    print("| measure | local | ray | ray - local (ratio) |\n|---|---|---|---|")
    if runs:
        secs = {e: [r["seconds"] for r in runs if r["engine"] == e] for e in ("local", "ray")}
        local_s, ray_s = np.mean(secs["local"]), np.mean(secs["ray"])
        order = ", ".join(str(r["seconds"]) for r in runs)
        print(
            f"| build wall s (A B B A: {order}) "
            f"| {local_s:.1f} | {ray_s:.1f} | {ray_s - local_s:+.1f} ({ray_s / local_s:.2f}x) |"
        )
    if lists is not None:
        print(
            "\n| cheap lists, p50 ms | apart (5 waits) | together (2 waits) | saved, paired |\n|---|---|---|---|"
        )
        for actors, r in lists["actors"].items():
            p = r["p50_ms"]
            print(
                f"| {actors} actor(s), bare round trip {r['bare_round_trip_p50_ms']:.1f} ms "
                f"| {p['apart']:.1f} | {p['together']:.1f} | {r['saved_paired_p50_ms']:+.1f} |"
            )
    if fan is None:
        if cold is not None:
            print(
                f"\nindexes identical: {results['identical_indexes']}; cold local build {cold['seconds']} s"
            )
        return
    for key, name in (
        ("api", "search_bm25 + search_static, k=100"),
        ("cheap", "cascade cheap stage"),
        ("cascade", "cascade, 1 hop"),
    ):
        lo, ra = fan["p50_ms"]["local"][key], fan["p50_ms"]["ray"][key]
        trips = fan["round_trips"].get(key)
        name = f"{name} ({trips:g} sequential round trips)" if trips is not None else name
        pair = fan["overhead_paired_p50_ms"][key]
        print(f"| p50 ms: {name} | {lo:.1f} | {ra:.1f} | {ra - lo:+.1f} (paired per question: {pair:+.1f}) |")
    bare = fan["bare_round_trip_p50_ms"]
    print(
        f"\nbare round trip (a no-op call to each of {bare['actors']} actors, gathered), p50 ms: "
        f"{bare['before']:.1f} before the queries, {bare['after']:.1f} after; load {results['uptime']}"
    )
    same = results["identical_indexes"] if runs else "not built in this run"
    print(
        f"\nindexes identical: {same}; queries with different ids or scores: "
        f"{fan['mismatches']} of {fan['queries']}"
    )


if __name__ == "__main__":
    main()
