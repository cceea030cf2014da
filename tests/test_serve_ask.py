"""`retro serve` with the shipped reader and the whole cascade (slow: MiniLM, jax and four reader
compilations at start-up): /v1/ask answers and cites like `retro ask`, and a person asks from the page
in a real headless Chromium (Debian's, driven by playwright; never a downloaded browser).

In CI (CI=true) a missing Chromium or playwright fails the page test; elsewhere it skips with the reason.
Set SERVE_SCREENSHOT=PATH to keep the page's screenshot."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from evals.filler import words_docs
from tests.conftest import build_small_index
from tests.serve_server import start_server

pytestmark = pytest.mark.slow

VALUE = "4829175"
SINGLE = f"One of the special magic numbers for lemon-parrot is: {VALUE}."
QUESTION = "What is the special magic number for lemon-parrot mentioned in the provided text?"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    filler = words_docs(seed=3, doc_chars=1500)
    docs = [{"id": doc_id, "text": text} for doc_id, text in (next(filler) for _ in range(20))]
    docs[4]["text"] += " " + SINGLE
    folder = tmp_path_factory.mktemp("serve-ask")
    idx = build_small_index(docs, folder, vocab_size=600)
    srv = start_server(idx, log=folder / "serve.err")
    yield srv
    srv.stop()


def _check_answer(body: dict) -> None:
    a = body["answer"]
    assert a["text"] == VALUE and not a["abstained"], a
    texts = {n["rank"]: n["text"] for n in body["neighbours"]}
    assert a["citations"]
    for c in a["citations"]:  # each citation is the answer's span in the neighbour it names
        assert texts[c["rank"]][c["char_start"] : c["char_end"]] == VALUE
    assert set(body["latency_ms"]) >= {"cheap", "medium", "expensive", "reader", "total"}


def test_ask_and_batch_answer_and_cite(server):
    with httpx.Client(base_url=server.url, timeout=300) as c:
        assert c.get("/health").json()["reader"].startswith("retro-reader")
        r = c.post("/v1/ask", json={"question": QUESTION, "id": "lp", "k": 5})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "lp" and r.json()["question"] == QUESTION
        _check_answer(r.json())
        r = c.post("/v1/ask/batch", json={"questions": [{"question": QUESTION, "id": 1}], "k": 3})
        assert r.status_code == 200, r.text
        _check_answer(r.json()["answers"][0])

        def one(k: int) -> httpx.Response:  # concurrent readers: MiniLM, the cascade and jax at once
            return c.post("/v1/ask", json={"question": QUESTION, "k": k})

        with ThreadPoolExecutor(4) as pool:
            for r in pool.map(one, [5, 4, 3, 2]):
                assert r.status_code == 200, r.text
                _check_answer(r.json())


def _browser(playwright):
    if not Path(CHROMIUM).is_file():
        reason = f"{CHROMIUM}: no Chromium (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


def test_a_person_asks_from_the_page(server, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    shot = Path(os.environ.get("SERVE_SCREENSHOT") or tmp_path / "page.png")
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('index-info').textContent.includes('chunks')")
            page.fill("#question", QUESTION)
            page.fill("#k", "5")
            page.click("#ask")
            page.wait_for_selector("#result:not([hidden])", timeout=120_000)
            assert page.inner_text("#answer") == VALUE
            rows = page.locator("#evidence tbody tr")
            assert rows.count() == 5
            cited = page.locator("#evidence tbody tr.cited")
            assert cited.count() >= 1 and cited.first.locator("mark").first.inner_text() == VALUE
            headers = page.locator("#evidence thead th").all_inner_texts()
            assert headers[:5] == ["#", "hop", "document", "tokens", "chars"] and "expensive rank" in headers
            first = rows.first.locator("td").all_inner_texts()
            assert first[0] == "1" and first[2].startswith("words-") and "-" in first[4]
            stages = page.locator("#latency tbody td:first-child").all_inner_texts()
            assert {"cheap", "medium", "expensive", "reader", "total"} <= set(stages)
            assert "cited: evidence #" in page.inner_text("#citations")
            page.screenshot(path=str(shot), full_page=True)
            # a wordless question shows the server's one sentence, not a broken page
            page.fill("#question", "?!")
            page.click("#ask")
            page.wait_for_selector("#status.error")
            assert "no searchable words" in page.inner_text("#status")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
