"""`retro serve` over real HTTP on 127.0.0.1: the typed result the CLI prints, the bounds as one-sentence
4xx errors, the schema, the key, concurrent clients, and the refusals that come before anything loads.

The server runs evidence only (`--no-reader`) with the cascade's cheap stage alone (medium, expensive
and expansion off), so it starts in seconds without MiniLM, jax or the reader; tests/test_serve_ask.py
runs the whole thing (slow)."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from index import Index
from pipelines.cascade import Cascade
from pipelines.cascade_config import cascade_config
from pipelines.query import MAX_QUERY_WORDS
from serve.config import ServeConfig
from tests.conftest import assert_refused_before_heavy_imports, build_small_index, stdlib_docs
from tests.serve_server import start_server

CHEAP = ["--set", "medium=off", "--set", "expensive=off", "--set", "expand=false"]
LIMITS = ServeConfig()
KEY = "s3cret-key-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    return build_small_index(stdlib_docs(limit=12), tmp_path_factory.mktemp("serve"), vocab_size=600)


@pytest.fixture(scope="module")
def server(idx, tmp_path_factory):
    srv = start_server(idx, "--no-reader", *CHEAP, log=tmp_path_factory.mktemp("log") / "serve.err")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def cascade(idx):
    return Cascade(Index.open(idx), cascade_config(None, [a for a in CHEAP if a != "--set"]))


def test_search_is_the_cli_object_of_the_same_cascade(client, cascade, idx):
    r = client.post("/v1/search", json={"query": "compress data with zlib", "k": 5})
    assert r.status_code == 200, r.text
    body, want = r.json(), cascade.search("compress data with zlib", k=5).to_dict()
    assert body.keys() == want.keys()
    assert [n["chunk"] for n in body["neighbours"]] == [n["chunk"] for n in want["neighbours"]]
    for got, exp in zip(body["neighbours"], want["neighbours"], strict=True):  # all but the timings
        assert got == exp
    assert body["budgets"] == want["budgets"] and body["latency_ms"].keys() == want["latency_ms"].keys()
    n = Index.open(idx).num_chunks
    assert r.headers["x-retro-generation"] == "0" and r.headers["x-retro-chunks"] == str(n)
    # a long query is cut at the CLI's bound and says so, it is not refused
    r = client.post("/v1/search", json={"query": " ".join(["zlib"] * (MAX_QUERY_WORDS + 50)), "k": 3})
    assert r.status_code == 200 and r.json()["truncated"]["model"] == "query"


def test_ask_without_reader_is_the_ask_object(client, cascade):
    r = client.post("/v1/ask", json={"question": "how do I read a csv file?", "id": "q1", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    want = cascade.search("how do I read a csv file?", k=4).ask_dict("q1")
    assert body.keys() == want.keys() and body["id"] == "q1" and body["answer"] is None
    assert [n["chunk"] for n in body["neighbours"]] == [n["chunk"] for n in want["neighbours"]]
    r = client.post(
        "/v1/ask/batch",
        json={"questions": [{"question": "base64 encoding", "id": 7}, {"question": "parse json"}], "k": 3},
    )
    assert r.status_code == 200, r.text
    answers = r.json()["answers"]
    assert [a["id"] for a in answers] == [7, None]
    assert [a["question"] for a in answers] == ["base64 encoding", "parse json"]
    assert all(len(a["neighbours"]) == 3 for a in answers)


def test_index_and_health_report_the_snapshot(client, idx):
    info = Index.open(idx).info()
    d = client.get("/v1/index").json()
    assert {k: d[k] for k in ("docs", "tokens", "chunks", "shards")} == {
        k: info[k] for k in ("docs", "tokens", "chunks", "shards")
    }
    assert d["generation"] == 0 and d["snapshot"] == 1 and d["reader"] is None
    assert d["limits"]["max_k"] == LIMITS.max_k
    h = client.get("/health").json()
    assert h == {
        "status": "ok",
        "generation": 0,
        "snapshot": 1,
        "chunks": info["chunks"],
        "reader": None,
        "last_error": None,
    }


BAD = [
    ({"query": "🙂🙂"}, "query: '🙂🙂' has no searchable words"),
    ({"query": "   "}, "query: is empty"),
    ({"query": ""}, "query: string should have at least 1 character"),
    ({"query": "x" * (LIMITS.max_query_chars + 1)}, f"at most {LIMITS.max_query_chars} characters"),
    ({"query": "zlib", "k": 0}, "k: input should be greater than or equal to 1 (got 0)"),
    ({"query": "zlib", "k": LIMITS.max_k + 1}, f"k: input should be less than or equal to {LIMITS.max_k}"),
    ({"query": "zlib", "k": "ten"}, "k: input should be a valid integer"),
    ({"query": "zlib", "hops": LIMITS.max_hops + 1}, "hops: input should be less than or equal to"),
    ({"query": "zlib", "kk": 3}, "kk: unknown field"),
    ({"k": 3}, "query: required"),
]


@pytest.mark.parametrize("body,detail", BAD, ids=[d.split(":")[0] + str(i) for i, (_, d) in enumerate(BAD)])
def test_a_bad_search_is_a_422_naming_the_field(client, body, detail):
    r = client.post("/v1/search", json=body)
    assert r.status_code == 422 and detail in r.json()["detail"], r.text
    assert "\n" not in r.json()["detail"]


def test_bad_bodies_and_batches(client):
    r = client.post("/v1/search", content=b'{"query": "zlib",', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body: not valid JSON"), r.text
    too_many = {"questions": [{"question": f"q{i}"} for i in range(LIMITS.max_batch + 1)]}
    r = client.post("/v1/ask/batch", json=too_many)
    assert r.status_code == 422 and r.json()["detail"].startswith("questions: "), r.text
    r = client.post("/v1/ask/batch", json={"questions": [{"question": "zlib"}, {"question": "?!"}]})
    assert r.status_code == 422 and r.json()["detail"].startswith("questions[1].question: '?!'"), r.text
    r = client.post("/v1/ask", json={"question": "zlib", "mode": "free"})
    assert r.status_code == 422 and r.json()["detail"].startswith("mode: this server has no reader"), r.text
    big = json.dumps({"query": "a " * LIMITS.max_body_bytes}).encode()
    r = client.post("/v1/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(LIMITS.max_body_bytes // 4096 + 2):
            yield b" " * 4096

    r = client.post("/v1/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert client.post("/v1/search", json={"query": "zlib", "k": 2}).status_code == 200  # still serving


def test_k_larger_than_the_index_is_a_422(idx):
    """The schema's maximum is the server's max_k; k is also checked against the snapshot's chunks
    (the app in process here, through httpx's ASGI transport, with a max_k above this index's size)."""
    import anyio

    from serve.app import create_app
    from serve.snapshot import Live

    live = Live(idx, cascade_config(None, [a for a in CHEAP if a != "--set"]))
    n = live.current.index.num_chunks
    app = create_app(live, ServeConfig(max_k=100_000))

    async def requests():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve") as c:
            return (
                await c.post("/v1/search", json={"query": "zlib", "k": n + 1}),
                await c.post("/v1/search", json={"query": "zlib", "k": n}),
                await c.get("/v1/index"),
            )

    over, full, info = anyio.run(requests)
    assert (
        over.status_code == 422
        and over.json()["detail"] == f"k: {n + 1} is larger than the index ({n} chunks)"
    )
    assert full.status_code == 200 and len(full.json()["neighbours"]) > 0
    assert info.json()["limits"]["max_k"] == n


def test_openapi_states_the_bounds(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    search = schemas["SearchRequest"]["properties"]
    k = next(s for s in search["k"]["anyOf"] if s.get("type") == "integer")
    assert (k["minimum"], k["maximum"]) == (1, LIMITS.max_k)
    assert search["query"]["maxLength"] == LIMITS.max_query_chars
    assert schemas["BatchRequest"]["properties"]["questions"]["maxItems"] == LIMITS.max_batch
    assert schemas["SearchRequest"]["additionalProperties"] is False


def test_the_page_and_its_script_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="ask-form"' in r.text and "text/html" in r.headers["content-type"]
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "textContent" in js.text and "innerHTML" not in js.text


def test_concurrent_clients_get_the_answers_of_serial_ones(client):
    queries = [f"{w} module documentation" for w in ("zlib", "csv", "json", "base64", "socket", "ast")] * 3
    serial = {q: client.post("/v1/search", json={"query": q, "k": 5}).json() for q in set(queries)}

    def one(q):
        return q, client.post("/v1/search", json={"query": q, "k": 5})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, queries))
    for q, r in results:
        assert r.status_code == 200, r.text
        assert [n["chunk"] for n in r.json()["neighbours"]] == [n["chunk"] for n in serial[q]["neighbours"]]


def test_a_key_guards_v1_and_not_health(idx, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    srv = start_server(idx, "--no-reader", *CHEAP, "--api-key-file", str(key_file), log=tmp_path / "err")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            body = {"query": "zlib", "k": 2}
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                r = c.post("/v1/search", json=body, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
                assert "Authorization" in r.json()["detail"]
            assert c.get("/v1/index").status_code == 401
            ok = {"Authorization": f"Bearer {KEY}"}
            assert c.post("/v1/search", json=body, headers=ok).status_code == 200
            assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
    finally:
        srv.stop()


def test_refusals_come_in_one_line_before_anything_loads(idx, tmp_path):
    """Each bad start in one fresh process: exit 2, one line naming the problem, and no torch, jax,
    FAISS or sentence-transformers imported by then."""
    short = tmp_path / "short"
    short.write_text("abc")
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    cases = [
        (["serve", str(idx), "--host", "0.0.0.0"], "--host 0.0.0.0: not a loopback address"),
        (["serve", str(idx), "--api-key-file", str(tmp_path / "none")], "no such file"),
        (["serve", str(idx), "--api-key-file", str(short)], "at least 16 characters"),
        (["serve", str(tmp_path / "nothing")], "no such index folder"),
        (["serve", str(idx), "--port", str(port)], f"127.0.0.1:{port}: cannot listen"),
        (["serve", str(idx), "--port", "70000"], "--port 70000: must be 0..65535"),
        (["serve", str(idx), "--reader", str(tmp_path / "no-reader")], "no such checkpoint folder"),
        (["serve", str(idx), "--set", "k=100000"], "larger than the index"),
        (["serve", str(idx), "--limit", "max_k=0"], "ServeConfig.max_k: must be > 0, got 0"),
        (["serve", str(idx), "--limit", "max_kk=3"], "unknown key(s) max_kk"),
    ]
    try:
        assert_refused_before_heavy_imports(cases)
    finally:
        busy.close()


def test_which_reader_shapes_and_hosts():
    from types import SimpleNamespace

    from serve.cli import is_loopback, warm_ks

    shipped = SimpleNamespace(k_buckets=(2, 4, 10, 20, 40))
    assert warm_ks(shipped, 20) == [2, 4, 10, 20]  # each bucket a k up to 20 pads to, nothing above
    assert warm_ks(shipped, 11) == [2, 4, 10, 20]  # k = 11 pads to 20
    assert warm_ks(shipped, 100) == [2, 4, 10, 20, 40]
    assert warm_ks(SimpleNamespace(), 3) == [1, 2, 3]  # a reader without buckets: every k
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "example.org")] == [False] * 4
