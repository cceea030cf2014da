"""Appending while serving (slow): a real `retro index build MORE --out IDX --append` subprocess runs
while clients stream queries over real HTTP. No query fails; each response is one snapshot's (every
chunk id below that snapshot's chunk count, and each neighbour's text and document are that chunk's);
the appended documents become findable once the server swaps the new snapshot in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from index import Index
from tests.conftest import build_small_index, stdlib_docs
from tests.serve_server import ROOT, start_server

pytestmark = pytest.mark.slow

NEEDLE = "The quartermaster's vault code is ZEPHYR-7731, kept in the archive ledger."
NEEDLE_QUERY = "quartermaster vault code ZEPHYR-7731"
QUERIES = [NEEDLE_QUERY, "compress data with zlib", "parse command line arguments", "read a csv file"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    docs = stdlib_docs(limit=40)
    folder = tmp_path_factory.mktemp("serve-append")
    idx = build_small_index(docs[:28], folder, vocab_size=600)
    more = folder / "more.jsonl"
    extra = [*docs[28:], {"id": "needle-vault", "text": f"Archive notes.\n\n{NEEDLE}\n\nEnd of the notes."}]
    more.write_text("".join(json.dumps(d) + "\n" for d in extra))
    return idx, more


def test_append_while_serving(corpora, tmp_path):
    idx, more = corpora
    before = Index.open(idx).num_chunks
    srv = start_server(idx, "--no-reader", log=tmp_path / "serve.err")
    responses: list[tuple[str, int, dict]] = []  # (query, chunks header, body)
    failures: list[str] = []
    stop = threading.Event()

    def stream(offset: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            i = offset
            while not stop.is_set():
                q = QUERIES[i % len(QUERIES)]
                i += 1
                try:
                    r = c.post("/v1/search", json={"query": q, "k": 5})
                except httpx.HTTPError as e:
                    failures.append(f"{q}: {e!r}")
                    continue
                if r.status_code != 200:
                    failures.append(f"{q}: {r.status_code} {r.text[:200]}")
                    continue
                responses.append((q, int(r.headers["x-retro-chunks"]), r.json()))

    try:
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            first = c.post("/v1/search", json={"query": NEEDLE_QUERY, "k": 5}).json()
            assert all(n["doc_id"] != "needle-vault" for n in first["neighbours"])
            clients = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
            for t in clients:
                t.start()
            env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
            cmd = [sys.executable, "-m", "pipelines.cli", "index", "build", str(more), "--out", str(idx)]
            run = subprocess.run([*cmd, "--append", "--quiet"], env=env, capture_output=True, text=True)
            assert run.returncode == 0, run.stderr[-2000:]
            deadline = time.time() + 600
            while c.get("/health").json()["snapshot"] < 2 and time.time() < deadline:
                time.sleep(0.5)
            health = c.get("/health").json()
            assert health["snapshot"] == 2 and health["last_error"] is None, health
            swapped = len(responses)
            while len(responses) < swapped + 4 and time.time() < deadline:  # a few more after the swap
                time.sleep(0.5)
            stop.set()
            for t in clients:
                t.join()
            after = c.post("/v1/search", json={"query": NEEDLE_QUERY, "k": 5})
            info = c.get("/v1/index").json()
    finally:
        stop.set()
        srv.stop()

    assert not failures, failures[:5]
    final = Index.open(idx)
    assert final.num_chunks > before and info["chunks"] == final.num_chunks and info["snapshot"] == 2
    assert int(after.headers["x-retro-chunks"]) == final.num_chunks
    assert after.json()["neighbours"][0]["doc_id"] == "needle-vault"  # the appended document is found
    seen = {chunks for _, chunks, _ in responses}
    assert seen == {before, final.num_chunks}  # answered from both snapshots, and from no other
    for q, chunks, body in responses:
        ids = [n["chunk"] for n in body["neighbours"]]
        assert ids and max(ids) < chunks, (q, chunks, ids)  # only chunks of the snapshot that answered
        texts, prov = final.neighbour_text(ids), final.provenance(ids)
        for n, text, p in zip(body["neighbours"], texts, prov, strict=True):
            assert n["text"] == text and n["doc_id"] == p["doc_id"]  # appends never change an old chunk
        if chunks == before:
            assert all(n["doc_id"] != "needle-vault" for n in body["neighbours"])
        elif q == NEEDLE_QUERY:
            assert body["neighbours"][0]["doc_id"] == "needle-vault"
