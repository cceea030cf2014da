"""The Ray engine (index/ray_build.py, pipelines/ray_search.py) on a real local Ray cluster: the same
index byte for byte, the same chunk ids and scores at every cascade stage, a worker killed mid-shard
retried. Ray starts once per session (~5-10 s), so the whole file is slow."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import tree_digest

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

SMALL = dict(vocab_size=2000, dense="off", shard_chunks=250)  # the real corpus in 4 shards


@pytest.fixture(scope="session")
def ray_session():
    """One local cluster of 2 CPUs for the session. An earlier test of the same pytest run may have
    started Ray in process already (a documented `--engine ray` command run through the CLI starts
    one with the machine's CPUs, and Ray refuses a second init): that one is stopped first."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def local_build(tmp_path_factory, real_corpus):
    from index.build import BuildConfig, build_index

    out = tmp_path_factory.mktemp("local") / "idx"
    build_index(real_corpus, out, BuildConfig(**SMALL), quiet=True)
    return out


def test_ray_build_is_the_local_build_byte_for_byte(tmp_path, real_corpus, local_build, ray_session):
    from index.build import BuildConfig, build_index

    manifest = build_index(real_corpus, tmp_path / "idx", BuildConfig(**SMALL), quiet=True, engine="ray")
    assert len(manifest["shards"]) >= 3  # several shard tasks, some at once
    assert tree_digest(tmp_path / "idx") == tree_digest(local_build)


def test_a_worker_killed_mid_shard_is_retried_and_the_index_is_the_same(
    tmp_path, real_corpus, local_build, ray_session, monkeypatch
):
    """A real SIGKILL of the worker building a shard (util/progress.py kill point `bm25`), in the
    first attempt only: Ray retries the task in a fresh worker and the build ends as the local one."""
    from index.build import BuildConfig, build_index

    once = tmp_path / "killed-once"
    monkeypatch.setenv("RETRO_KILL_AT", "bm25")
    monkeypatch.setenv("RETRO_KILL_ONCE", str(once))
    build_index(real_corpus, tmp_path / "idx", BuildConfig(**SMALL), quiet=True, engine="ray")
    assert once.is_file()  # a worker did die
    assert tree_digest(tmp_path / "idx") == tree_digest(local_build)


def test_a_driver_killed_mid_build_resumes_through_ray(tmp_path, real_corpus, local_build, ray_session):
    """The driver itself killed (a real kill -9 at its manifest write): the rerun, through Ray again,
    resumes from build.json and ends byte-identical to the local build."""
    import subprocess
    import sys

    out = tmp_path / "idx"
    address = ray.get_runtime_context().gcs_address  # the killed driver joins this session's cluster
    script = (
        "import sys; from index.build import BuildConfig, build_index\n"
        f"build_index(sys.argv[1], sys.argv[2], BuildConfig(**{SMALL!r}), quiet=True, engine='ray', "
        "ray_address=sys.argv[3])\n"
    )
    env = {**os.environ, "RETRO_KILL_AT": "manifest"}
    argv = [sys.executable, "-c", script, str(real_corpus), str(out), address]
    run = subprocess.run(argv, env=env, timeout=600)
    assert run.returncode == -9
    assert (out / "build.json").is_file() and not (out / "index.json").exists()
    from index.build import BuildConfig, build_index

    build_index(real_corpus, out, BuildConfig(**SMALL), quiet=True, engine="ray")
    assert tree_digest(out) == tree_digest(local_build)


QUERIES = [
    "how do I compare two sequences of lines",
    "parse command line options and arguments",
    "temporary file that is deleted when closed",
    "json encoder for custom objects",
]


def _stage_lists(result) -> list:
    """Every hop's every stage: ids and scores of its result and of each raw list it kept."""
    out = []
    for hop in result.hops:
        for name, stage in hop.stages.items():
            out.append((name, np.asarray(stage.ids).tolist(), np.asarray(stage.scores).tolist()))
            for list_name, ranked in sorted((stage.lists or {}).items()):
                if ranked is not None:
                    out.append(
                        (
                            f"{name}.{list_name}",
                            np.asarray(ranked.ids).tolist(),
                            np.asarray(ranked.scores).tolist(),
                        )
                    )
    return out


def test_ray_fan_out_gives_the_local_cascade_ids_and_scores(local_build, ray_session):
    from index import Index
    from pipelines.cascade import Cascade
    from pipelines.cascade_config import CascadeConfig
    from pipelines.ray_search import RayIndex

    cfg = CascadeConfig()  # ondemand_budget_ms 0: both engines encode the same candidates
    local = Cascade(Index.open(local_build), cfg, quiet=True)
    remote_index = RayIndex.open(local_build)
    try:
        assert len(remote_index._actors) == 2  # two actors share the four shards
        fanned = Cascade(remote_index, cfg, encoder=local.encoder, quiet=True)
        for query in QUERIES:
            a, b = local.search(query, hops=2), fanned.search(query, hops=2)
            assert _stage_lists(a) == _stage_lists(b), query
            assert [(n.chunk, n.stages) for n in a.neighbours] == [(n.chunk, n.stages) for n in b.neighbours]
        # the Index API on its own: plain BM25, weighted and grouped BM25, idf, static ANN
        idx = local.index
        for query in QUERIES:
            for got, want in [
                (remote_index.search_bm25(query, k=20), idx.search_bm25(query, k=20)),
                (remote_index.search_static(query, k=20), idx.search_static(query, k=20)),
            ]:
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])
            assert remote_index.bm25_idf_mass(query) == idx.bm25_idf_mass(query)
        weights, groups = {"file": 1.0, "line": 0.7, "temporari": 0.4}, {"file": "f", "line": "f"}
        for g in (None, groups):
            got = remote_index.search_bm25_weighted(weights, k=30, groups=g)
            want = idx.search_bm25_weighted(weights, k=30, groups=g)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(
            remote_index.bm25_term_idf(["file", "zzyzx"]), idx.bm25_term_idf(["file", "zzyzx"])
        )
        # several lists in one call per actor, a pruned one among them (its candidates split per actor)
        from index.lists import BM25Query, StaticQuery, WeightedQuery

        requests = [
            BM25Query(QUERIES[1], 25),
            StaticQuery(QUERIES[2], 25),
            WeightedQuery(weights, 30, groups, frozenset({"file"}), 3, np.arange(0, idx.num_chunks, 5)),
        ]
        for got, want in zip(remote_index.search_lists(requests), idx.search_lists(requests), strict=True):
            assert (got.ids.tolist(), got.scores.tolist()) == (want.ids.tolist(), want.scores.tolist())
        ids = [idx.tokenizer.encode(q) for q in QUERIES]
        tokens = np.full((len(ids), max(map(len, ids))), idx.tokenizer.pad_id, np.int64)
        for row, toks in enumerate(ids):
            tokens[row, : len(toks)] = toks
        for name in ("search_bm25_tokens", "search_static_tokens"):
            for got, want in zip(
                getattr(remote_index, name)(tokens, 9), getattr(idx, name)(tokens, 9), strict=True
            ):
                np.testing.assert_array_equal(got, want)
        # the levers that make the expanded list wait for the others (a later, third call)
        levers = CascadeConfig(
            expand_late_df=0.01, expand_pool=20, expand_max_df=0.2, expand_skip_literal=0.9
        )
        local_levers = Cascade(local.index, levers, encoder=local.encoder, quiet=True)
        fanned_levers = Cascade(remote_index, levers, encoder=local.encoder, quiet=True)
        for query in QUERIES:
            a, b = local_levers.search(query, hops=2), fanned_levers.search(query, hops=2)
            assert _stage_lists(a) == _stage_lists(b), query
    finally:
        remote_index.close()


def test_a_cascade_hop_waits_on_the_actors_twice(local_build, ray_session, monkeypatch):
    """The cheap stage's three lists go to each actor in one call: a hop of a question new to the
    cluster waits twice (its terms' frequencies, then every list), once when its terms are known."""
    from pipelines.cascade import Cascade
    from pipelines.ray_search import RayIndex

    remote_index = RayIndex.open(local_build)
    try:
        cascade = Cascade(remote_index, quiet=True)
        cascade.warm()
        waits = []
        get = ray.get
        monkeypatch.setattr(ray, "get", lambda *a, **kw: waits.append(1) or get(*a, **kw))
        for query in QUERIES:
            remote_index._df_cache.clear()
            waits.clear()
            result = cascade.search(query, hops=1)
            assert result.hops[0].stages["cheap"].lists["expanded"].ids.size  # three lists, not two
            assert len(waits) == 2, query
            waits.clear()
            cascade.search(query, hops=1)
            assert len(waits) == 1, query
    finally:
        remote_index.close()


def test_cli_search_through_ray_prints_the_local_json(local_build, ray_session, capsys):
    """`retro search --engine ray` (joining this session's cluster) prints what the local engine does,
    less the timings."""
    import json

    from pipelines.cli import main

    def timeless(obj):
        if isinstance(obj, dict):
            return {k: timeless(v) for k, v in obj.items() if not (k == "ms" or k.endswith("_ms"))}
        return [timeless(v) for v in obj] if isinstance(obj, list) else obj

    def run(*extra):
        argv = ["search", str(local_build), QUERIES[0], "--json", *extra]
        assert main(argv) == 0
        return timeless(json.loads(capsys.readouterr().out))

    assert run("--engine", "ray") == run()
