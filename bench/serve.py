"""Benchmark: `retro serve`'s /v1/search over real HTTP against `Cascade.search` in process, side by side.

    python bench/serve.py                          # 1M-token needles haystack, 40 questions, 4 clients
    python bench/serve.py --work data/serve --tokens 1M --queries 40 --clients 4

One run measures, over the same questions, each run twice in the order A B C D D C B A (the
figures pool both; a box whose load drifts favours none) (100-needle haystack questions, as `retro demo` asks them):
  - in process, serial: `Cascade.search` one question at a time (p50, p90);
  - in process, `--clients` threads sharing one Cascade (per-question p50, p90, and wall throughput);
  - the server, `--clients` concurrent HTTP clients on 127.0.0.1 (`retro serve IDX --no-reader`,
    a real subprocess), and one client at a time;
  - the first request after start-up against the median of the rest, in process and over HTTP (the
    same question first in both: a question's own cost is not mistaken for a cold start).
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


def start_server(idx: Path, log: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`retro serve IDX --port 0 ARGS` as a subprocess; (process, base URL) once it prints its ready
    line (stderr goes to `log`; exits with its tail when the server does not start)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pipelines.cli", "serve", str(idx), "--port", "0", *args]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    line = proc.stdout.readline()
    if "ready on" not in line:
        proc.kill()
        raise SystemExit(f"retro serve did not start: {log.read_text()[-2000:]}")
    return proc, line.split("ready on ", 1)[1].split()[0].rstrip("/")


def over_http(idx: Path, questions: list[str], clients: int, log: Path) -> dict:
    """Per-request ms of POST /v1/search from `clients` concurrent clients to a fresh `retro serve`
    (with one client, ms[0] is its first request after the ready line), and its start-up seconds."""
    import httpx

    t_start = time.perf_counter()
    proc, url = start_server(idx, log, "--no-reader")
    try:
        ready_s = time.perf_counter() - t_start
        local = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]

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
    return {"ms": ms, "wall_s": wall, "ready_s": ready_s}


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
    passes: dict[str, list[dict]] = {}
    for name, run in plan + plan[::-1]:  # A B C D D C B A: a box whose load drifts favours no run
        r = run()
        print(f"{name}: p50 {statistics.median(r['ms']):.0f} ms", file=sys.stderr, flush=True)
        passes.setdefault(name, []).append(r)
    from index import Index

    info = Index.open(idx).info()
    print(f"\nindex: {info['tokens']:,} tokens, {info['chunks']:,} chunks, {info['shards']} shard(s)\n")
    print("| run | p50 ms | p90 ms | mean ms | questions/s |")
    print("|---|---|---|---|---|")
    pooled = {}
    for name, rs in passes.items():
        ms = [m for r in rs for m in r["ms"]]
        pooled[name] = statistics.median(ms)
        rate = len(ms) / sum(r["wall_s"] for r in rs)
        print(f"| {name} | {pooled[name]:.0f} | {pct(ms, 90):.0f} | {statistics.mean(ms):.0f} | {rate:.2f} |")
    conc = a.clients
    ratio = pooled[f"server, {conc} clients"] / pooled[f"in process, {conc} threads"]
    print(f"\nserver / in-process p50 at {conc} concurrent: {ratio:.2f} (target <= 1.2)")
    print(f"server / in-process p50 serial: {pooled['server, 1 client'] / pooled['in process, serial']:.2f}")
    # the first question after start-up (the same question in both) against the median of the rest
    for name in ("in process, serial", "server, 1 client"):
        firsts = ", ".join(f"{r['ms'][0]:.0f}" for r in passes[name])
        rest = statistics.median([m for r in passes[name] for m in r["ms"][1:]])
        ready = [f"{r['ready_s']:.0f}" for r in passes[name] if "ready_s" in r]
        up = f"; ready after {', '.join(ready)} s" if ready else ""
        print(f"{name}: first request {firsts} ms (each pass), median of the rest {rest:.0f} ms{up}")
    print(
        json.dumps({n: [{k: v for k, v in r.items() if k != "ms"} for r in rs] for n, rs in passes.items()}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
