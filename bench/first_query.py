"""Benchmark first queries: `retro search` wall time as a user sees it, old code against new, one run.

    ../shared/tools/realtext-corpus data/real1m.jsonl --tokens 1.2e6
    python bench/first_query.py data/real1m.jsonl --work data/bench-first-query

For each code version (old = a git commit, main's f1ec4c2 by default, extracted with `git archive`;
new = this checkout), each with its own empty $RETRO_CACHE, as a new user would have:
1. build the index over the corpus minus its last `--append-docs` documents (wall seconds);
2. `retro search IDX QUERY --json` as a subprocess, first query after the build: wall seconds, and the
   search latency the command reports (`latency_ms.total`); the OS page cache of the Python
   environment, the model and the index is evicted first (posix_fadvise DONTNEED: "cold");
3. the same command again (warm OS cache, and whatever the first query cached);
4. `--append` of the last documents, then the first query after it (cold again);
5. import time: a fresh interpreter importing the CLI and loading the dense model, nothing else
   (what every `retro` call pays before its first query).
Every subprocess runs under the same `nice`; the machine's load average is printed beside the table,
since other jobs share the box. Prints a markdown table and writes results.json into --work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "how do I list the open network sockets of a process"
IMPORT_CHILD = """
import time
t = time.perf_counter()
from pipelines.cli import build_parser
build_parser()
from index.embedders import load_dense
load_dense("all-MiniLM-L6-v2")
print(time.perf_counter() - t)
"""


def evict(paths: list[Path]) -> int:
    """Drop the clean page-cache pages of every file under `paths` (no root needed); returns files."""
    n = 0
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    n += 1
                finally:
                    os.close(fd)
    return n


def run(cmd: list[str], env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(["nice", "-n", "19", *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return wall, proc


def search(code: Path, env: dict, index: Path, query: str, cold: list[Path] | None) -> dict:
    """One `retro search --json` in a fresh process: wall seconds and the reported latency."""
    if cold is not None:
        evict(cold)
    wall, proc = run(
        [sys.executable, "-m", "pipelines.cli", "search", str(index), query, "--json"], env, code
    )
    total_ms = json.loads(proc.stdout.strip().splitlines()[-1])["latency_ms"]["total"]
    return {"wall_s": round(wall, 2), "search_s": round(total_ms / 1e3, 2), "load": os.getloadavg()[0]}


def version(name: str, code: Path, corpus: Path, extra: Path, work: Path, query: str) -> dict:
    """Build, first query, second query, append, first query after it, import time, for one code tree."""
    cache, index = work / f"cache-{name}", work / f"idx-{name}"
    for p in (cache, index):
        subprocess.run(["rm", "-rf", str(p)], check=True)
    env = dict(
        os.environ, PYTHONPATH=str(code), RETRO_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"
    )
    cold = [Path(sys.prefix), index, cache]
    out: dict = {"code": str(code)}
    print(f"[{name}] build", file=sys.stderr, flush=True)
    build = [sys.executable, "-m", "pipelines.cli", "index", "build"]
    wall, _ = run([*build, str(corpus), "--out", str(index), "--quiet"], env, code)
    out["build_s"] = round(wall, 1)
    print(f"[{name}] first query", file=sys.stderr, flush=True)
    out["first"] = search(code, env, index, query, cold)
    out["second"] = search(code, env, index, query, None)
    print(f"[{name}] append", file=sys.stderr, flush=True)
    wall, _ = run([*build, str(extra), "--out", str(index), "--append", "--quiet"], env, code)
    out["append_s"] = round(wall, 1)
    out["after_append"] = search(code, env, index, query, cold)
    out["after_append_second"] = search(code, env, index, query, None)
    evict(cold)
    _, proc = run([sys.executable, "-c", IMPORT_CHILD], env, code)
    out["import_cold_s"] = round(float(proc.stdout.split()[-1]), 2)
    _, proc = run([sys.executable, "-c", IMPORT_CHILD], env, code)
    out["import_warm_s"] = round(float(proc.stdout.split()[-1]), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="jsonl corpus (realtext-corpus)")
    ap.add_argument(
        "--work", type=Path, required=True, help="folder for the indexes, caches and results.json"
    )
    ap.add_argument("--old", default="f1ec4c2", help="the commit to compare with (default: f1ec4c2)")
    ap.add_argument("--append-docs", type=int, default=100, help="last documents kept back for the append")
    ap.add_argument("--query", default=QUERY, help="the query")
    args = ap.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"{args.corpus}: no such corpus file")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lines = args.corpus.read_text().splitlines(keepends=True)
    if len(lines) <= args.append_docs:
        sys.exit(f"{args.corpus}: needs more than --append-docs {args.append_docs} documents")
    base, extra = work / "base.jsonl", work / "extra.jsonl"
    base.write_text("".join(lines[: -args.append_docs]))
    extra.write_text("".join(lines[-args.append_docs :]))
    old = work / f"code-{args.old}"
    if not old.is_dir():
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.old], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "new_commit": head.stdout.strip(),
        "old_commit": args.old,
        "corpus": str(args.corpus),
        "docs": [len(lines) - args.append_docs, args.append_docs],
        "query": args.query,
        "load_before": os.getloadavg(),
        "old": version("old", old, base, extra, work, args.query),
        "new": version("new", ROOT, base, extra, work, args.query),
        "load_after": os.getloadavg(),
    }
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    o, n = results["old"], results["new"]
    rows = [
        ("index build (s)", o["build_s"], n["build_s"]),
        ("first query after the build: wall (s), cold OS cache", o["first"]["wall_s"], n["first"]["wall_s"]),
        ("  of which search latency_ms.total (s)", o["first"]["search_s"], n["first"]["search_s"]),
        ("second query: wall (s), warm", o["second"]["wall_s"], n["second"]["wall_s"]),
        ("  of which search (s)", o["second"]["search_s"], n["second"]["search_s"]),
        ("append (s)", o["append_s"], n["append_s"]),
        (
            "first query after the append: wall (s), cold",
            o["after_append"]["wall_s"],
            n["after_append"]["wall_s"],
        ),
        ("  of which search (s)", o["after_append"]["search_s"], n["after_append"]["search_s"]),
        (
            "next query: wall (s), warm",
            o["after_append_second"]["wall_s"],
            n["after_append_second"]["wall_s"],
        ),
        ("import CLI + load MiniLM (s), cold", o["import_cold_s"], n["import_cold_s"]),
        ("import CLI + load MiniLM (s), warm", o["import_warm_s"], n["import_warm_s"]),
    ]
    print(f"| measure | old ({args.old}) | new ({results['new_commit']}) |\n|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a} | {b} |")
    print(
        f"\nload average (1 min) before {results['load_before'][0]:.1f}, after {results['load_after'][0]:.1f}"
    )


if __name__ == "__main__":
    main()
