"""`retro plan`: what an index of N tokens needs, from this project's measurements (pipelines/plan.py).

    retro plan --tokens 1e12 [--ram-per-node 256G] [--disk-per-node 4T] [--qps 100] [--p95-ms 1000]
        [--cores-per-node 32] [--nodes N] [--parallel-scans N] [--skip expanded] [--inputs FILE] [--json]

Prints the configuration (shards, nodes, replicas, memory and disk per node, build time), the expected
p50/p95 of each cascade stage with whether it scales with shards per node or is fixed, and every
measured input with its source (BENCHMARKS.md section, command, date). Nothing is loaded but the
inputs file, so it answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pipelines.plan import (
    FIXED,
    INPUTS,
    SHARDED,
    PlanConfig,
    load_inputs,
    make_plan,
    parse_count,
    parse_size,
    per_chunk_ms,
)


def _gib(b: float) -> str:
    return f"{b / 2**40:,.2f} TiB" if b >= 2**40 else f"{b / 2**30:,.1f} GiB"


def _duration(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def print_plan(plan, inputs, out=None) -> None:
    """The plan as a person reads it: configuration, stages, inputs with their sources, notes."""
    out = sys.stdout if out is None else out
    c = plan.config
    w = lambda *a: print(*a, file=out)  # noqa: E731
    w(f"plan for {c.tokens:,.0f} tokens, {c.qps:g} questions/s, p95 <= {c.p95_ms:,.0f} ms")
    w(f"nodes: {_gib(c.ram_per_node)} RAM, {_gib(c.disk_per_node)} disk, {c.cores_per_node} cores")
    w(f"stages skipped: {', '.join(c.skip)}\n" if c.skip else "")
    w("| figure | value | from |\n|---|---|---|")
    w(f"| chunks | {plan.chunks:,} | tokens / tokens per chunk (tokens_1b / chunks_1b) |")
    w(
        f"| shards | {plan.shards:,} | chunks / {plan.shard_chunks:,} chunks per shard (BuildConfig.shard_chunks) |"
    )
    why = (
        "given (--nodes)"
        if plan.bound_by == "given"
        else f"fewest that meet memory, disk and p95 ({plan.bound_by} decides)"
    )
    w(f"| nodes per replica | {plan.nodes_per_replica:,} | {why} |")
    w(
        f"| shards per node | {plan.shards_per_node:,} | scanned {c.parallel_scans or c.cores_per_node} at a time |"
    )
    w(
        f"| replicas | {plan.replicas:,} | qps x core-ms per question / (cores x {c.utilisation:g} utilisation) |"
    )
    w(f"| nodes in all | {plan.nodes_per_replica * plan.replicas:,} | nodes per replica x replicas |")
    w(
        f"| resident memory per node | {_gib(plan.ram_per_node)} | base + resident bytes/token x tokens per node |"
    )
    w(f"| disk per node | {_gib(plan.disk_per_node)} | disk bytes/token x tokens per node |")
    w(
        f"| build time | {_duration(plan.build_s)} | fixed + tokens / (per-core rate x cores x {plan.nodes_per_replica} nodes) |"
    )
    w("\n| stage | p50 ms | p95 ms | scales with |\n|---|---|---|---|")
    for s in plan.stages:
        how = "shards per node (parallel across nodes)" if s.scales else "fixed (fused candidates)"
        if s.name == "fanout":
            how = "fixed (fan-out + exact top-k merge)"
        if s.name in c.skip:
            how = "skipped (--skip)"
        w(f"| {s.name} | {s.p50_ms:,.1f} | {s.p95_ms:,.1f} | {how} |")
    w(f"| **total** | **{plan.p50_ms:,.1f}** | **{plan.p95_ms:,.1f}** | sum of the stages |")
    if plan.static_scan_ms is not None:
        shard_ms = per_chunk_ms(inputs)["static"] * plan.chunks / plan.shards
        w(
            f"\nstatic tier: the FAISS scan alone is {plan.static_scan_ms:.3f} ms a shard (static_ns_per_code x "
            f"codes scanned), the stage {shard_ms:.3f} ms a shard end "
            f"to end (1B rate); recall@10 of that code at 10^7 vectors: {inputs['static_recall_at_10'].value:.3f}"
        )
    sources: dict[tuple[str, str, str], int] = {}
    w("\n| input | value | unit | source | note |\n|---|---|---|---|---|")
    for name, i in inputs.items():
        src = sources.setdefault((i.section, i.command, i.date), len(sources) + 1)
        w(f"| {name} | {i.value:,.6g} | {i.unit} | [{src}] | {i.note} |")
    w("\nsources (BENCHMARKS.md section or results file, date, command; the 2-core AMD EPYC box):")
    for (section, command, date), k in sources.items():
        w(f"[{k}] {section}, {date}: `{command}`")
    w(f"assumed, not measured: utilisation {c.utilisation:g}; a node scans one shard per core at a time")
    for n in plan.notes:
        w(f"note: {n}")


def _plan(args: argparse.Namespace) -> int:
    cfg = PlanConfig(
        tokens=parse_count(args.tokens, "--tokens"),
        ram_per_node=parse_size(args.ram_per_node, "--ram-per-node"),
        disk_per_node=parse_size(args.disk_per_node, "--disk-per-node"),
        qps=args.qps,
        p95_ms=args.p95_ms,
        cores_per_node=args.cores_per_node,
        nodes=args.nodes,
        skip=tuple(args.skip or ()),
        parallel_scans=args.parallel_scans,
    ).check()
    inputs = load_inputs(Path(args.inputs)) if args.inputs else load_inputs()
    plan = make_plan(cfg, inputs)
    if args.json:
        doc = dataclasses.asdict(plan) | {"inputs": {k: dataclasses.asdict(v) for k, v in inputs.items()}}
        print(json.dumps(doc, indent=1))
    else:
        print_plan(plan, inputs)
    return 0


def register(subparsers) -> None:
    """Add `plan`."""
    p = subparsers.add_parser(
        "plan",
        help="shards, nodes, replicas, memory, disk, build time and latency for N tokens, from measurements",
    )
    p.add_argument("--tokens", required=True, help="index size in tokens: 1e12, 1T, 100M (required)")
    p.add_argument("--ram-per-node", default="256G", help="RAM per node, binary units (K M G T)")
    p.add_argument("--disk-per-node", default="4T", help="disk per node, binary units (K M G T)")
    p.add_argument("--qps", type=float, default=100.0, help="questions per second to serve")
    p.add_argument("--p95-ms", type=float, default=1000.0, help="target p95 latency per question, ms")
    p.add_argument("--cores-per-node", type=int, default=32, help="cores per node")
    p.add_argument("--nodes", type=int, default=None, help="nodes per replica (default: the fewest that fit)")
    p.add_argument(
        "--parallel-scans",
        type=int,
        default=None,
        help="shards a node scans at once (default: one per core; 1: today's local path, one after another)",
    )
    p.add_argument(
        "--skip",
        action="append",
        choices=SHARDED + FIXED,
        help="plan as if this stage were skipped (repeatable), e.g. expanded: literal questions skip it",
    )
    p.add_argument(
        "--inputs",
        default=None,
        help=f"measured inputs file (default: {INPUTS.relative_to(INPUTS.parents[2])})",
    )
    p.add_argument("--json", action="store_true", help="the plan and its inputs as JSON")
    p.set_defaults(func=_plan)
