"""Soak: many requests from several clients against one `retro serve`, with latency, errors and memory.

    python bench/serve_soak.py                                  # 10,000 requests, 4 clients, 128K tokens
    python bench/serve_soak.py --work data/soak --requests 10000 --clients 4 --tokens 128K --ask

The server is a real subprocess on 127.0.0.1 (`retro serve IDX`, `--no-reader` unless `--ask`) over a
needles haystack (bench/serve.py's `prepare`). Each client sends, in a seeded order: searches of the
100 needle questions (most requests), `GET /v1/index` and `/health`, a bad request now and then (a
wordless query, k = 0, a body over the limit: each must be its 4xx, never a 5xx), and with `--ask`
questions to the reader. Reported: per-endpoint p50 / p99, requests per second, errors (a 5xx, a
refused connection, a timeout, or a bad request not answered with its 4xx) and the server's resident
memory (RSS, sampled every second by psutil) after the warm-up share of the requests against the end
and the peak. Targets (issue 13): >= 10,000 requests, 0 errors, RSS growth <= 5% after warm-up.
Results: WORK/soak.json (with run info); a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [
    p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"
]  # bench/serve.py shadows serve/
sys.path.insert(0, str(ROOT))

WARMUP = 0.05  # share of the requests before the RSS baseline is taken
BAD = [  # (body, the status it must get)
    ({"query": "🙂🙂🙂"}, 422),  # no searchable words
    ({"query": "tar", "k": 0}, 422),
    ({"query": "x" * 300_000}, 413),  # over the body limit
    ({"qurey": "typo"}, 422),  # unknown field
]


def plan(n: int, questions: list[str], ask: bool, seed: int) -> list[tuple[str, str, object, int]]:
    """n requests as (name, path, json body or None for GET, expected status)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.04:
            out.append(("health", "/health", None, 200))
        elif r < 0.08:
            out.append(("index", "/v1/index", None, 200))
        elif r < 0.10:
            body, status = rng.choice(BAD)
            out.append(("bad", "/v1/search", body, status))
        elif ask and r < 0.25:
            out.append(("ask", "/v1/ask", {"question": rng.choice(questions)}, 200))
        else:
            out.append(
                ("search", "/v1/search", {"query": rng.choice(questions), "k": rng.choice((5, 10))}, 200)
            )
    return out


def soak(url: str, pid: int, requests: list, clients: int) -> dict:
    """Send `requests` from `clients` threads; per-request (name, ms, ok, i) and the RSS samples."""
    import httpx
    import psutil

    server = psutil.Process(pid)
    rss: list[tuple[int, int]] = []  # (requests done, bytes)
    done = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss.append((done[0], server.memory_info().rss))
            stop.wait(1.0)

    local = threading.local()
    lock = threading.Lock()

    def one(i_req) -> tuple[str, float, bool, str]:
        i, (name, path, body, want) = i_req
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=300)
        t = time.perf_counter()
        try:
            r = local.c.get(path) if body is None else local.c.post(path, json=body)
            ok, why = r.status_code == want, f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        ms = (time.perf_counter() - t) * 1e3
        with lock:
            done[0] += 1
            if done[0] % 500 == 0:
                print(f"  {done[0]:,} / {len(requests):,} requests", file=sys.stderr, flush=True)
        return name, ms, ok, why

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = list(pool.map(one, enumerate(requests)))
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    rss.append((done[0], server.memory_info().rss))
    return {"rows": rows, "wall_s": wall, "rss": rss}


def main(argv: list[str] | None = None) -> int:
    from bench.serve import pct, prepare, start_server
    from evals.niah import parse_size
    from util.runinfo import atomic_write_json, run_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("data/soak"), help="corpus and index folder (reused)")
    ap.add_argument("--tokens", default="128K", help="haystack size")
    ap.add_argument("--requests", type=int, default=10_000, help="requests in all")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients")
    ap.add_argument("--ask", action="store_true", help="load the reader and send 15%% of requests to /v1/ask")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.requests < 100 or a.clients < 1:
        ap.error("--requests must be >= 100 and --clients >= 1")
    a.work.mkdir(parents=True, exist_ok=True)
    idx, questions = prepare(a.work, parse_size(a.tokens), a.seed)
    requests = plan(a.requests, questions, a.ask, a.seed)
    t = time.perf_counter()
    proc, url = start_server(idx, a.work / "serve.err", *([] if a.ask else ["--no-reader"]))
    ready_s = time.perf_counter() - t
    try:
        r = soak(url, proc.pid, requests, a.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    rows, rss = r["rows"], r["rss"]
    errors = [(name, why) for name, _, ok, why in rows if not ok]
    base_at = int(WARMUP * len(requests))
    base = next(b for n, b in rss if n >= base_at) if any(n >= base_at for n, _ in rss) else rss[-1][1]
    end, peak = rss[-1][1], max(b for n, b in rss if n >= base_at)
    by_name: dict[str, list[float]] = {}
    for name, ms, _, _ in rows:
        by_name.setdefault(name, []).append(ms)
    print(
        f"\n{len(rows):,} requests from {a.clients} clients in {r['wall_s']:.0f} s "
        f"({len(rows) / r['wall_s']:.1f}/s); server ready after {ready_s:.0f} s\n"
    )
    print("| endpoint | requests | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for name, ms in sorted(by_name.items()):
        print(f"| {name} | {len(ms):,} | {statistics.median(ms):.0f} | {pct(ms, 99):.0f} |")
    growth = end / base - 1
    print(
        f"\nerrors: {len(errors)}; server RSS after warm-up ({base_at:,} requests) {base / 2**20:.0f} MB, "
        f"end {end / 2**20:.0f} MB ({growth:+.1%}), peak {peak / 2**20:.0f} MB (target: 0 errors, <= +5%)"
    )
    for name, why in errors[:10]:
        print(f"  error: {name}: {why}")
    atomic_write_json(
        a.work / "soak.json",
        {
            "run": run_info(),
            "args": {k: str(v) for k, v in vars(a).items()},
            "requests": len(rows),
            "wall_s": r["wall_s"],
            "ready_s": ready_s,
            "errors": len(errors),
            "error_samples": errors[:50],
            "p50_ms": {n: statistics.median(ms) for n, ms in by_name.items()},
            "p99_ms": {n: pct(ms, 99) for n, ms in by_name.items()},
            "rss": {"baseline": base, "end": end, "peak": peak, "growth": growth, "samples": rss},
        },
    )
    return 0 if not errors and growth <= 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
