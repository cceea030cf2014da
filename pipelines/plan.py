"""`retro plan`: shards, nodes, replicas, memory, disk, build time and per-stage latency for an index of
any size, computed only from figures this project measured (bench/results/plan_inputs.json).

Why a model this simple is enough: every cost the cascade pays grows with one of two things. The
cheap stage (BM25, static ANN, the expanded list) scans every shard, and a shard's scan time follows
its chunk count (postings and IVF lists grow with it; global idf needs no extra pass); so a per-chunk
rate from the 1B-token run (65 shards scanned one after another in one process) times a shard's chunks
gives a shard's time, and a node with c cores scans c shards at once (the Ray fan-out, one shard per
task). The medium and final stages score the fused candidates (32 chunks) whatever the index size, so
they are fixed. Disk is bytes/token x tokens; memory a base plus bytes/token resident, fitted through
the 100M and 1B peaks. Build time is the fixed cost (tokenizer, quantizer) plus tokens over the
per-core build rate of the 1B run, spread over the nodes of one replica.

Checked against two measured runs (tests/test_plan.py): with the measured machine as input (1 node, 2
cores, shards one after another) it predicts the 100M run's chunks (<1% off), disk (1.81 vs 1.8 GB),
build (292 vs 347 s: that run had the slower first compound scan) and cascade p50 (within 15%), and the
1B run's shards (65) and p50 (within 10%).

Assumptions that are not measurements are fields of PlanConfig and printed as such: the target CPU
utilisation per replica (queueing) and whether shards are scanned in parallel.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "bench" / "results" / "plan_inputs.json"
BYTES = ROOT / "bench" / "results" / "bytes_per_token.json"  # bench/bytes_per_token.py, when run
RAY = ROOT / "bench" / "results" / "ray_engine.json"  # bench/ray_engine.py's results.json, when copied here
SHARDED = ("bm25", "static", "expanded")  # per-shard scans, in parallel across cores and nodes
FIXED = ("medium", "final")  # over the fused candidates: the same at any index size
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_COUNTS = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


@dataclass(frozen=True)
class Input:
    """One measured figure and where it comes from."""

    value: float  # the figure
    unit: str  # its unit (tokens, s, ms, B/token, GB, ratio, ...)
    section: str  # the BENCHMARKS.md section (or results file) that reports it
    command: str  # the command that measured it
    date: str  # when
    note: str = ""  # what it covers


@dataclass(frozen=True)
class PlanConfig:
    """What the user asks for (and the two assumptions, stated)."""

    tokens: float  # index size in tokens
    ram_per_node: int = 256 * 2**30  # bytes of RAM per node
    disk_per_node: int = 4 * 2**40  # bytes of disk per node
    qps: float = 100.0  # questions per second to serve
    p95_ms: float = 1000.0  # target p95 latency of one question (all stages)
    cores_per_node: int = 32  # cores per node (the rates are per core of the measured 2-core EPYC)
    nodes: int | None = None  # nodes per replica (None: the fewest that meet memory, disk and p95)
    parallel_scans: int | None = (
        None  # shards a node scans at once (None: one per core; 1: today's local path)
    )
    utilisation: float = 0.5  # assumed, not measured: busy share of a replica's cores at the target qps
    skip: tuple[str, ...] = ()  # stages planned as skipped (e.g. the expanded list for literal questions)

    def check(self) -> PlanConfig:
        """Raise ValueError naming the argument when one is out of range."""
        for name, ok in [
            ("--tokens", self.tokens >= 1),
            ("--ram-per-node", self.ram_per_node > 0),
            ("--disk-per-node", self.disk_per_node > 0),
            ("--qps", self.qps > 0),
            ("--p95-ms", self.p95_ms > 0),
            ("--cores-per-node", self.cores_per_node >= 1),
            ("--nodes", self.nodes is None or self.nodes >= 1),
            ("--parallel-scans", self.parallel_scans is None or self.parallel_scans >= 1),
            ("utilisation", 0 < self.utilisation <= 1),
            ("--skip", all(s in SHARDED + FIXED for s in self.skip)),
        ]:
            if not ok:
                raise ValueError(f"{name}: out of range ({getattr(self, name.strip('-').replace('-', '_'))})")
        return self


@dataclass(frozen=True)
class Stage:
    """Expected latency of one cascade stage."""

    name: str  # bm25 | static | expanded | medium | final | fanout
    p50_ms: float  # expected median
    p95_ms: float  # expected 95th percentile
    scales: bool  # True: per-shard scans (shards per node / parallel scans); False: fixed per question


@dataclass(frozen=True)
class Plan:
    """The configuration `retro plan` prints; every number follows from PlanConfig and the inputs."""

    config: PlanConfig  # what was asked
    chunks: int  # tokens / tokens per chunk (1B run)
    shard_chunks: int  # chunks per shard (BuildConfig default)
    shards: int  # ceil(chunks / shard_chunks), as the builder closes shards
    nodes_per_replica: int  # nodes holding one copy of every shard
    replicas: int  # copies needed for the qps at the assumed utilisation
    shards_per_node: int  # ceil(shards / nodes_per_replica)
    disk_per_node: float  # bytes on disk per node
    ram_per_node: float  # resident bytes per node while answering
    build_s: float  # build on the nodes of one replica
    stages: tuple[Stage, ...]  # per stage, in cascade order
    p50_ms: float  # sum of the stages' p50
    p95_ms: float  # sum of the stages' p95 (an upper bound)
    bound_by: str  # what set nodes_per_replica: memory | disk | p95 | given
    static_scan_ms: float | None  # FAISS scan alone of one shard (the 10^7 curve's rate), None if unmeasured
    notes: tuple[str, ...] = field(default=())  # targets not met, inputs missing


def parse_size(text: str, what: str) -> int:
    """Bytes of '256G', '4T', '512M', '1.5T' (binary units) or a plain byte count."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*", str(text), re.I)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a size like 256G or 4T")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_count(text: str, what: str) -> float:
    """A count of '1e12', '1T', '100M', '1.5B' or '106481115'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([KMBGT]?)\s*", str(text), re.I)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{what}: {text!r} is not a count like 1e12, 1T or 100M")
    return float(m.group(1)) * _COUNTS[m.group(2).upper()]


def load_inputs(path: Path = INPUTS, bytes_path: Path = BYTES, ray_path: Path = RAY) -> dict[str, Input]:
    """The measured inputs; newer measurements (bytes by part, Ray) replace the figures they cover."""
    if not path.is_file():
        raise OSError(f"{path}: plan inputs not found")
    try:
        raw = json.loads(path.read_text())["inputs"]
        inputs = {k: Input(**v) for k, v in raw.items()}
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a plan inputs file ({e})") from None
    if bytes_path.is_file():
        b = json.loads(bytes_path.read_text())
        cmd, date = b.get("command", "python bench/bytes_per_token.py"), b.get("date", "")
        inputs["disk_bytes_per_token"] = Input(
            sum(b["disk"].values()),
            "B/token",
            bytes_path.name,
            cmd,
            date,
            f"at {b['tokens']:,} tokens, by part",
        )
    if ray_path.is_file():
        r = json.loads(ray_path.read_text())
        cmd, date = "python bench/ray_engine.py", r.get("run", {}).get("date", "")
        fan = r["fan_out"]["overhead_p50_ms"]["cascade"]
        inputs["fanout_p50_ms"] = Input(fan, "ms", ray_path.name, cmd, date, "Ray fan-out, local cluster")
        secs = {e: [b["seconds"] for b in r["builds"] if b["engine"] == e] for e in ("local", "ray")}
        ratio = (sum(secs["ray"]) / len(secs["ray"])) / (sum(secs["local"]) / len(secs["local"]))
        inputs["ray_build_ratio"] = Input(ratio, "ratio", ray_path.name, cmd, date, "Ray build / local build")
    return inputs


def _v(inputs: dict[str, Input], name: str, default: float | None = None) -> float:
    if name in inputs:
        return float(inputs[name].value)
    if default is None:
        raise ValueError(f"plan inputs: {name!r} is missing")
    return default


def rss_fit(inputs: dict[str, Input]) -> tuple[float, float]:
    """(base bytes, resident bytes per token): the line through the 100M and 1B peak RSS."""
    t1, t2 = _v(inputs, "tokens_100m"), _v(inputs, "tokens_1b")
    r1, r2 = _v(inputs, "peak_rss_gb_100m") * 1e9, _v(inputs, "peak_rss_gb_1b") * 1e9
    per_token = (r2 - r1) / (t2 - t1)
    return r1 - per_token * t1, per_token


def per_chunk_ms(inputs: dict[str, Input]) -> dict[str, float]:
    """ms per chunk of each sharded stage, from the 1B run (shards one after another in one process,
    end to end: the stage's Python and per-shard overhead included)."""
    chunks = _v(inputs, "chunks_1b")
    return {s: _v(inputs, f"{s}_p50_ms_1b") / chunks for s in SHARDED}


def static_scan_ms(inputs: dict[str, Input], chunks_per_shard: float) -> float | None:
    """The FAISS scan alone of one shard's static tier (bench/static_curve.py's ns per scanned code, one
    query at a time, times the codes a shard's IVF scans: nprobe / nlist of its chunks), or None when
    the curve has not been measured. A lower bound of the static stage's per-shard time."""
    if "static_ns_per_code" not in inputs:
        return None
    return _v(inputs, "static_ns_per_code") * chunks_per_shard * _v(inputs, "static_scan_fraction") / 1e6


def make_plan(cfg: PlanConfig, inputs: dict[str, Input], shard_chunks: int = 262_144) -> Plan:
    """The plan for `cfg` from the measured `inputs` (pure arithmetic)."""
    cfg.check()
    notes: list[str] = []
    chunks = math.ceil(cfg.tokens / (_v(inputs, "tokens_1b") / _v(inputs, "chunks_1b")))
    shards = math.ceil(chunks / shard_chunks)
    chunks_per_shard = chunks / shards
    disk_total = cfg.tokens * _v(inputs, "disk_bytes_per_token")
    base, rss_per_token = rss_fit(inputs)
    if cfg.ram_per_node <= base:
        raise ValueError(
            f"--ram-per-node: {cfg.ram_per_node / 2**30:.1f} GiB is below the measured base RSS "
            f"{base / 2**30:.1f} GiB"
        )
    need_ram = math.ceil(cfg.tokens * rss_per_token / (cfg.ram_per_node - base))
    need_disk = math.ceil(disk_total / cfg.disk_per_node)
    par = cfg.parallel_scans or cfg.cores_per_node
    rates = per_chunk_ms(inputs)
    shard_p50 = {s: 0.0 if s in cfg.skip else rates[s] * chunks_per_shard for s in SHARDED}
    cheap_ratio = _v(inputs, "cheap_p95_over_p50")
    fanout = _v(inputs, "fanout_p50_ms", 0.0)
    if "fanout_p50_ms" not in inputs:
        notes.append("Ray fan-out overhead not measured yet (no bench/results/ray_engine.json): counted as 0")
    fixed = {
        "medium": (
            _v(inputs, "medium_p50_ms_1b"),
            _v(inputs, "medium_p50_ms_1b") * _v(inputs, "medium_p95_over_p50"),
        ),
        "final": (_v(inputs, "final_p50_ms"), _v(inputs, "final_p50_ms") * _v(inputs, "final_p95_over_p50")),
        "fanout": (fanout, fanout),
    }
    fixed_p95 = sum(p95 for _, p95 in fixed.values())
    round_p95 = sum(shard_p50.values()) * cheap_ratio  # one round of parallel shard scans
    if cfg.nodes is not None:
        n, bound = cfg.nodes, "given"
    else:
        n, bound = max(need_ram, need_disk, 1), "memory" if need_ram >= need_disk else "disk"
        rounds = math.floor((cfg.p95_ms - fixed_p95) / round_p95) if round_p95 > 0 else shards
        if rounds < 1:
            notes.append(
                f"p95 {cfg.p95_ms:,.0f} ms not reachable: fixed stages {fixed_p95:,.0f} ms + one round of shard "
                f"scans {round_p95:,.0f} ms; nodes kept at what memory and disk need"
            )
        elif math.ceil(shards / (rounds * par)) > n:
            n, bound = math.ceil(shards / (rounds * par)), "p95"
    n = min(n, shards)
    per_node = math.ceil(shards / n)
    rounds_now = math.ceil(per_node / par)
    stages = [
        Stage(s, rounds_now * shard_p50[s], rounds_now * shard_p50[s] * cheap_ratio, True) for s in SHARDED
    ]
    stages += [Stage(s, p50, p95, False) for s, (p50, p95) in fixed.items()]
    core_ms = shards * sum(shard_p50.values()) + sum(p50 for s, (p50, _) in fixed.items() if s != "fanout")
    qps_per_replica = n * cfg.cores_per_node * 1000 * cfg.utilisation / core_ms
    replicas = math.ceil(cfg.qps / qps_per_replica)
    build_rate = (
        _v(inputs, "tokens_1b")
        / (_v(inputs, "build_s_1b") - _v(inputs, "tokenizer_train_s") - _v(inputs, "quantizer_train_s"))
        / _v(inputs, "build_cores")
    )
    build_s = _v(inputs, "tokenizer_train_s") + _v(inputs, "quantizer_train_s")
    build_s += cfg.tokens / (build_rate * cfg.cores_per_node * n) * _v(inputs, "ray_build_ratio", 1.0)
    if "ray_build_ratio" not in inputs and n > 1:
        notes.append("Ray build overhead not measured yet: build time assumes the local per-core rate")
    p95 = sum(s.p95_ms for s in stages)
    if p95 > cfg.p95_ms and not any("not reachable" in x for x in notes):
        notes.append(f"p95 {p95:,.0f} ms exceeds the target {cfg.p95_ms:,.0f} ms")
    return Plan(
        config=cfg,
        chunks=chunks,
        shard_chunks=shard_chunks,
        shards=shards,
        nodes_per_replica=n,
        replicas=replicas,
        shards_per_node=per_node,
        disk_per_node=disk_total / n,
        ram_per_node=base + rss_per_token * cfg.tokens / n,
        build_s=build_s,
        stages=tuple(stages),
        p50_ms=sum(s.p50_ms for s in stages),
        p95_ms=p95,
        bound_by=bound,
        static_scan_ms=static_scan_ms(inputs, chunks_per_shard),
        notes=tuple(notes),
    )
