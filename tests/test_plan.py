"""`retro plan`: its arithmetic reproduces the measured 100M and 1B runs, it scales the way the model
says, newer measurement files replace the figures they cover, and every bad argument is one line."""

from __future__ import annotations

import json
import math

import pytest

from pipelines.cli import main
from pipelines.plan import INPUTS, PlanConfig, load_inputs, make_plan, parse_count, parse_size

CHECKS = json.loads(INPUTS.read_text())["checks"]


@pytest.fixture
def inputs(tmp_path):
    """The committed inputs alone (no bytes-by-part or Ray file), so the checks see the seeded figures."""
    return load_inputs(INPUTS, tmp_path / "none.json", tmp_path / "none.json")


def _measured_machine(tokens: float) -> PlanConfig:
    """The box the runs were measured on: 1 node, 2 cores, 24 GB, shards scanned one after another."""
    return PlanConfig(
        tokens=tokens,
        ram_per_node=24 * 2**30,
        disk_per_node=200 * 2**30,
        qps=0.1,
        cores_per_node=2,
        nodes=1,
        parallel_scans=1,
    )


def _near(got: float, want: float, tol: float) -> bool:
    return abs(got - want) <= tol * want


def test_reproduces_the_100m_run(inputs):
    """106M tokens on the measured box: chunks within 1%, shards as the builder closes them (ceil of
    chunks / 262,144 = 7), disk within 5% of 1.8 GB, build within 25% of 347 s (that run used the
    first, slower compound scan; 1B's per-core rate predicts 292 s), cascade p50 within 15% of 1,905 ms.
    None of these 100M figures is an input of the arithmetic (the rates come from the 1B run)."""
    m = CHECKS["100m"]
    plan = make_plan(_measured_machine(m["tokens"]), inputs)
    assert _near(plan.chunks, m["chunks"], 0.01)
    assert plan.shards == math.ceil(m["chunks"] / 262_144) == 7
    assert _near(plan.disk_per_node, m["disk_gb"] * 1e9, 0.05)
    assert _near(plan.build_s, m["build_s"], 0.25)
    assert _near(plan.p50_ms, m["cascade_p50_ms"], 0.15), plan.p50_ms
    assert plan.nodes_per_replica == 1 and plan.replicas == 1


def test_reproduces_the_1b_run(inputs):
    """1.06B tokens: 65 shards exactly, disk within 5% of 18 GB, build within 5% of 45 min 16 s, and
    the sum of the stages' p50 within 10% of the measured cascade p50 (12,524 ms)."""
    m = CHECKS["1b"]
    plan = make_plan(_measured_machine(m["tokens"]), inputs)
    assert plan.shards == m["shards"]
    assert _near(plan.chunks, m["chunks"], 0.001)
    assert _near(plan.disk_per_node, m["disk_gb"] * 1e9, 0.05)
    assert _near(plan.build_s, m["build_s"], 0.05)
    assert _near(plan.p50_ms, m["cascade_p50_ms"], 0.10), plan.p50_ms


def test_sharded_stages_scale_with_shards_per_node_and_fixed_stages_do_not(inputs):
    one = make_plan(PlanConfig(tokens=1e11, nodes=4, cores_per_node=8), inputs)
    two = make_plan(PlanConfig(tokens=1e11, nodes=8, cores_per_node=8), inputs)
    for a, b in zip(one.stages, two.stages, strict=True):
        if a.scales:
            assert b.p50_ms == pytest.approx(
                a.p50_ms * math.ceil(two.shards_per_node / 8) / math.ceil(one.shards_per_node / 8)
            )
            assert b.p50_ms < a.p50_ms
        else:
            assert b.p50_ms == a.p50_ms
    assert two.build_s < one.build_s and two.disk_per_node == pytest.approx(one.disk_per_node / 2)
    busy = make_plan(PlanConfig(tokens=1e11, nodes=4, cores_per_node=8, qps=1000), inputs)
    assert busy.replicas > one.replicas


def test_nodes_follow_memory_disk_and_latency(inputs):
    """The fewest nodes: RAM-bound with small RAM, disk-bound with small disk, more for a looser p95's
    opposite (a tight one that the fixed stages allow)."""
    small_ram = make_plan(
        PlanConfig(tokens=1e12, ram_per_node=64 * 2**30, disk_per_node=2**50, p95_ms=1e9), inputs
    )
    big_ram = make_plan(PlanConfig(tokens=1e12, ram_per_node=2**50, disk_per_node=2**50, p95_ms=1e9), inputs)
    assert small_ram.bound_by == "memory" and small_ram.nodes_per_replica > big_ram.nodes_per_replica
    assert small_ram.ram_per_node <= 64 * 2**30
    small_disk = make_plan(
        PlanConfig(tokens=1e12, ram_per_node=2**50, disk_per_node=2**40, p95_ms=1e9), inputs
    )
    assert small_disk.bound_by == "disk" and small_disk.disk_per_node <= 2**40
    loose = make_plan(PlanConfig(tokens=1e10, ram_per_node=2**50, disk_per_node=2**50, p95_ms=1e9), inputs)
    tight = make_plan(PlanConfig(tokens=1e10, ram_per_node=2**50, disk_per_node=2**50, p95_ms=5000), inputs)
    assert tight.bound_by == "p95" and tight.nodes_per_replica > loose.nodes_per_replica
    assert tight.p95_ms <= 5000
    impossible = make_plan(PlanConfig(tokens=1e10, p95_ms=10), inputs)
    assert any("not reachable" in n for n in impossible.notes)


def test_newer_measurements_replace_the_seeded_figures(tmp_path):
    """bytes_per_token.json (bench/bytes_per_token.py) and the Ray bench's results replace disk
    bytes/token, the fan-out overhead and the build ratio, and say where they come from."""
    b, r = tmp_path / "bytes.json", tmp_path / "ray.json"
    b.write_text(
        json.dumps(
            {
                "tokens": 10_000_000,
                "disk": {"bm25 postings": 5.0, "static": 0.5, "tokens": 2.0},
                "command": "python bench/bytes_per_token.py IDX",
                "date": "2026-12-01",
            }
        )
    )
    r.write_text(
        json.dumps(
            {
                "run": {"date": "2026-12-01"},
                "fan_out": {"overhead_p50_ms": {"cascade": 12.0}},
                "builds": [{"engine": "local", "seconds": 100}, {"engine": "ray", "seconds": 120}],
            }
        )
    )
    inputs = load_inputs(INPUTS, b, r)
    assert (
        inputs["disk_bytes_per_token"].value == 7.5 and inputs["disk_bytes_per_token"].section == "bytes.json"
    )
    assert inputs["fanout_p50_ms"].value == 12.0 and inputs["ray_build_ratio"].value == pytest.approx(1.2)
    base = make_plan(PlanConfig(tokens=1e12, nodes=10), load_inputs(INPUTS, tmp_path / "x", tmp_path / "x"))
    new = make_plan(PlanConfig(tokens=1e12, nodes=10), inputs)
    assert new.disk_per_node == pytest.approx(base.disk_per_node * 7.5 / 17)
    assert new.p50_ms == pytest.approx(base.p50_ms + 12.0)
    assert not any("not measured" in n for n in new.notes)


def test_sizes_and_counts_parse():
    assert parse_size("256G", "x") == 256 * 2**30 and parse_size("4T", "x") == 4 * 2**40
    assert parse_size("1.5TiB", "x") == int(1.5 * 2**40) and parse_size("512", "x") == 512
    assert parse_count("1e12", "x") == 1e12 and parse_count("1T", "x") == 1e12
    assert parse_count("100M", "x") == 1e8 and parse_count("106481115", "x") == 106481115


def test_cli_prints_the_plan_with_every_input_and_its_source(capsys):
    assert (
        main(
            [
                "plan",
                "--tokens",
                "1e12",
                "--ram-per-node",
                "256G",
                "--disk-per-node",
                "4T",
                "--qps",
                "100",
                "--p95-ms",
                "1000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for word in (
        "shards",
        "nodes per replica",
        "replicas",
        "resident memory per node",
        "disk per node",
        "build time",
        "| bm25 |",
        "| expanded |",
        "| medium |",
        "| final |",
        "| fanout |",
    ):
        assert word in out, word
    for name, i in json.loads(INPUTS.read_text())["inputs"].items():
        assert f"| {name} |" in out and i["command"] in out
    assert main(["plan", "--tokens", "1064576580", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["shards"] == 65 and "tokens_1b" in doc["inputs"]


@pytest.mark.parametrize(
    "argv,names",
    [
        (["--tokens", "lots"], "--tokens"),
        (["--tokens", "0"], "--tokens"),
        (["--tokens", "1e12", "--ram-per-node", "256X"], "--ram-per-node"),
        (["--tokens", "1e12", "--ram-per-node", "1G"], "--ram-per-node"),
        (["--tokens", "1e12", "--disk-per-node", "0T"], "--disk-per-node"),
        (["--tokens", "1e12", "--qps", "0"], "--qps"),
        (["--tokens", "1e12", "--p95-ms=-5"], "--p95-ms"),
        (["--tokens", "1e12", "--cores-per-node", "0"], "--cores-per-node"),
        (["--tokens", "1e12", "--nodes", "0"], "--nodes"),
        (["--tokens", "1e12", "--parallel-scans", "0"], "--parallel-scans"),
        (["--tokens", "1e12", "--inputs", "/nonexistent/plan.json"], "/nonexistent/plan.json"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_argument(argv, names, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("retro: error:") and names in err and "\n" not in err, err


def test_a_broken_inputs_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "plan.json"
    bad.write_text('{"inputs": {"tokens_1b": {"value": 1}}}')
    assert main(["plan", "--tokens", "1e12", "--inputs", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "\n" not in err


def test_the_readme_shows_what_the_code_prints(capsys):
    """The README's `retro plan` output is this code's output for the same command on the committed
    inputs (regenerate it with the command when an input changes)."""
    import re
    import shlex

    from pipelines.plan import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"```bash\n(retro plan [^\n]+)\n```\n\n[^\n]*\n\n```text\n(.*?)```", text, re.S)
    assert m, "README: no retro plan command followed by its output"
    assert main(shlex.split(m.group(1))[1:]) == 0
    assert capsys.readouterr().out == m.group(2)
