"""Benchmark: `retro serve`'s /v1/search over real HTTP against `Cascade.search` in process, side by side.

    python bench/serve.py                          # 1M-token needles haystack, 40 questions, 4 clients
    python bench/serve.py --work data/serve --tokens 1M --queries 40 --clients 4

One run measures, over the same questions, each run twice in the order A B C D D C B A (the
figures pool both; a box whose load drifts favours none) (100-needle haystack questions, as `retro demo` asks them):
  - in process, serial: `Cascade.search` one question at a time (p50, p90);
  - in process, `--clients` threads sharing one Cascade (per-question p50, p90, and wall throughput);
  - the server, `--clients` concurrent HTTP clients on 127.0.0.1 (`retro serve IDX --no-reader`,
    a real subprocess), and one client at a time;
  - the server's first request after its ready line vs the median of the rest.
Each of the four runs starts with an empty chunk-encoding cache (a fresh Cascade, a fresh server),
so none is faster for having seen the questions. Target (issue 13): server p50 <= 1.2 x in-process
p50 at the same concurrency. Corpus and index are built once under --work and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/serve.py` puts bench/ first on sys.path, where this file would shadow the serve package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
FIRST = "Which value is recorded for the first key in the haystack?"  # never among the measured questions


def prepare(work: Path, tokens: int, seed: int) -> tuple[Path, list[str]]:
    """The haystack corpus, its index and the needle questions (built once, reused)."""
    from evals.haystack import HaystackConfig, write_haystack
    from evals.needles import NeedleConfig, make_needles
    from index.build import BuildConfig, build_index

    needles = make_needles(NeedleConfig(), 100, seed)
    idx = work / "idx"
    if not (idx / "index.json").is_file():
        write_haystack(HaystackConfig(kind="needles", tokens=tokens, seed=seed), needles, work / "hay")
        build_index(work / "hay" / "corpus.jsonl", idx, BuildConfig(), quiet=True)
    return idx, [s.question for s in needles.samples]


def pct(ms: list[float], q: float) -> float:
    return statistics.quantiles(ms, n=100, method="inclusive")[int(q) - 1] if len(ms) > 1 else ms[0]


def in_process(idx: Path, questions: list[str], clients: int) -> dict:
    """Per-question ms of Cascade.search with `clients` threads sharing one fresh, warmed Cascade."""
    from index import Index
    from pipelines.cascade import Cascade
    from serve.snapshot import WARM_QUERIES

    cascade = Cascade(Index.open(idx))
    cascade.warm()
    for q in WARM_QUERIES:  # as the server warms
        cascade.search(q)

    def one(q: str) -> float:
        t = time.perf_counter()
        cascade.search(q)
        return (time.perf_counter() - t) * 1e3

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ms = list(pool.map(one, questions))
    return {"ms": ms, "wall_s": time.perf_counter() - t0}


def over_http(idx: Path, questions: list[str], clients: int, log: Path) -> dict:
    """Per-request ms of POST /v1/search from `clients` concurrent clients to a fresh `retro serve`,
    plus the first request's ms (a question not measured) and the server's warm-up seconds."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", "serve", str(idx), "--no-reader", "--port", "0"]
    t_start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if "ready on" not in line:
            raise SystemExit(f"retro serve did not start: {log.read_text()[-2000:]}")
        ready_s = time.perf_counter() - t_start
        url = line.split("ready on ", 1)[1].split()[0].rstrip("/")
        local = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]
        t = time.perf_counter()
        r = local[0].post("/v1/search", json={"query": FIRST})
        first_ms = (time.perf_counter() - t) * 1e3
        r.raise_for_status()

        def one(i_q: tuple[int, str]) -> float:
            i, q = i_q
            t = time.perf_counter()
            r = local[i % clients].post("/v1/search", json={"query": q})
            r.raise_for_status()
            return (time.perf_counter() - t) * 1e3

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            ms = list(pool.map(one, enumerate(questions)))
        wall = time.perf_counter() - t0
        for c in local:
            c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"ms": ms, "wall_s": wall, "first_ms": first_ms, "ready_s": ready_s}


def main(argv: list[str] | None = None) -> int:
    from evals.niah import parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/serve"), help="corpus and index folder (reused)")
    ap.add_argument("--tokens", default="1M", help="haystack size")
    ap.add_argument("--queries", type=int, default=40, help="questions measured per run")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients / threads")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.queries < 2 or a.clients < 1:
        ap.error("--queries must be >= 2 and --clients >= 1")
    a.work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    idx, questions = prepare(a.work, parse_size(a.tokens), a.seed)
    questions = questions[: a.queries]
    print(
        f"index {idx} ready in {time.perf_counter() - t:.0f} s; {len(questions)} questions", file=sys.stderr
    )
    plan = [
        ("in process, serial", lambda: in_process(idx, questions, 1)),
        ("server, 1 client", lambda: over_http(idx, questions, 1, a.work / "serve-1.err")),
        (f"in process, {a.clients} threads", lambda: in_process(idx, questions, a.clients)),
        (
            f"server, {a.clients} clients",
            lambda: over_http(idx, questions, a.clients, a.work / "serve-c.err"),
        ),
    ]
    runs: dict[str, dict] = {}
    for name, run in plan + plan[::-1]:  # A B C D D C B A: a box whose load drifts favours no run
        r = run()
        print(f"{name}: p50 {statistics.median(r['ms']):.0f} ms", file=sys.stderr, flush=True)
        if name in runs:
            got = runs[name]
            r = {
                "ms": got["ms"] + r["ms"],
                "wall_s": got["wall_s"] + r["wall_s"],
                **{k: got.get(k, []) + [r[k]] for k in ("first_ms", "ready_s") if k in r},
            }
        else:
            r = {**r, **{k: [r[k]] for k in ("first_ms", "ready_s") if k in r}}
        runs[name] = r
    from index import Index

    info = Index.open(idx).info()
    print(f"\nindex: {info['tokens']:,} tokens, {info['chunks']:,} chunks, {info['shards']} shard(s)\n")
    print("| run | p50 ms | p90 ms | mean ms | questions/s |")
    print("|---|---|---|---|---|")
    for name, r in runs.items():
        ms = r["ms"]
        print(
            f"| {name} | {statistics.median(ms):.0f} | {pct(ms, 90):.0f} | {statistics.mean(ms):.0f} "
            f"| {len(ms) / r['wall_s']:.2f} |"
        )
    p_in = statistics.median(runs[f"in process, {a.clients} threads"]["ms"])
    p_srv = statistics.median(runs[f"server, {a.clients} clients"]["ms"])
    s_in = statistics.median(runs["in process, serial"]["ms"])
    s_srv = statistics.median(runs["server, 1 client"]["ms"])
    print(f"\nserver / in-process p50 at {a.clients} concurrent: {p_srv / p_in:.2f} (target <= 1.2)")
    print(f"server / in-process p50 serial: {s_srv / s_in:.2f}")
    for name in (f"server, {a.clients} clients", "server, 1 client"):
        r = runs[name]
        firsts = ", ".join(f"{ms:.0f}" for ms in r["first_ms"])
        ready = ", ".join(f"{s:.0f}" for s in r["ready_s"])
        print(
            f"{name}: ready after {ready} s; first request {firsts} ms (each start), "
            f"median {statistics.median(r['ms']):.0f} ms"
        )
    print(
        json.dumps({n: {k: v for k, v in r.items() if k != "ms"} for n, r in runs.items()}), file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
