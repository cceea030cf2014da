"""What a user who types something wrong meets (issue 14): a one-line error before anything heavy
loads, an output that cannot be written refused before any work, a batch that survives one bad
question or an interrupt, and a pasted page searched as its first MAX_QUERY_WORDS words.

Real small index, the real CLI entry (`pipelines.cli.main`), real subprocesses where the point is what
a fresh process imports or how it dies."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index import Index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig
from pipelines.cli import main
from pipelines.query import MAX_QUERY_WORDS, WORD_CHARS, bound_query
from tests.conftest import assert_refused_before_heavy_imports, build_small_index, stdlib_docs

ROOT = Path(__file__).resolve().parent.parent
# retrieval without any model: BM25 + static only, no reader (fast, and nothing to load)
NO_MODELS = ["--set", "medium=off", "--set", "expensive=off", "--set", "expand=false"]
NIAH = ["eval", "niah", "--tokens", "2K", "--needles", "1", "--retriever", "bm25", "--no-reader"]


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> str:
    docs = [{"id": d["id"], "text": d["text"][:2000]} for d in stdlib_docs(limit=8)]
    return str(build_small_index(docs, tmp_path_factory.mktemp("cli-input"), vocab_size=600))


def _questions(path: Path, questions: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in enumerate(questions))
    )
    return path


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("retro: error: ") and "\n" not in err, err
    return err


def test_a_wordless_question_gets_an_error_line_and_the_batch_goes_on(idx, tmp_path, capsys):
    q = _questions(tmp_path / "q.jsonl", ["which module encodes base64?", "🙂🙂", "what does asyncio run?"])
    out = tmp_path / "a.jsonl"
    argv = ["ask", idx, "--questions", str(q), "--out", str(out), "--quiet", "-k", "2", "--no-reader"]
    assert main([*argv, *NO_MODELS]) == 0
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [x["id"] for x in lines] == ["q0", "q1", "q2"]
    assert "no searchable words" in lines[1]["error"] and lines[1]["question"] == "🙂🙂"
    for x in (lines[0], lines[2]):
        assert "error" not in x and len(x["neighbours"]) == 2
    meta = json.loads((tmp_path / "a.jsonl.meta.json").read_text())
    assert (meta["answered"], meta["errors"], meta["unanswered"]) == (2, 1, 0)
    capsys.readouterr()
    # alone, such a query is a plain one-line error
    assert main(["search", idx, "🙂🙂🙂"]) == 2
    assert "'🙂🙂🙂' has no searchable words" in _err_line(capsys)
    assert main(["ask", idx, "?!", "--no-reader"]) == 2
    assert "no searchable words" in _err_line(capsys)


def test_argument_errors_come_before_any_heavy_import(idx, tmp_path):
    """Each bad argument, run in one fresh process: exit 2, one line naming the problem, and no torch,
    sentence-transformers, jax or faiss imported by then (they take 25-45 s on a busy 2-core box)."""
    q = _questions(tmp_path / "q.jsonl", ["which module encodes base64?"])
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    cases = [
        (["search", idx, "x", "-k", "0"], "-k must be > 0"),
        (["search", idx, "x", "-k", "100000"], "larger than the index"),
        (["search", idx, "  "], "query is empty"),
        (["search", idx, "🙂🙂🙂"], "no searchable words"),
        (["ask", idx, "", "--no-reader"], "question is empty"),
        (
            ["ask", idx, "--questions", str(tmp_path / "missing.jsonl"), "--out", "a.jsonl"],
            "no such questions file",
        ),
        (["ask", idx, "--questions", str(tmp_path), "--out", "a.jsonl"], "is a folder, not a questions file"),
        (["ask", idx, "why?", "--reader", str(tmp_path / "no-reader")], "no such checkpoint folder"),
        (
            ["ask", idx, "--questions", str(q), "--out", str(a_file / "a.jsonl")],
            f"--out {a_file / 'a.jsonl'}",
        ),
        (
            ["eval", "niah", "--retriever", "bogus", "--out", str(tmp_path / "niah")],
            "unknown retriever 'bogus'",
        ),
        (
            ["eval", "niah", "--retriever", "cascade,n9=1", "--out", str(tmp_path / "niah")],
            "unknown key(s) n9",
        ),
        (
            ["generate", str(tmp_path), "--prompt", "hi", "--index", idx, "--retriever", "x"],
            "--retriever 'x'",
        ),
        (["neighbours", idx, "--out", str(tmp_path / "nb"), "-k", "0"], "-k must be > 0"),
        (["neighbours", idx, "--out", str(tmp_path / "nb"), "-k", "100000"], "larger than the index"),
        (["search", idx, "x", "--ray-address", "auto"], "--ray-address: only with --engine ray"),
        (["search", idx, "x", "--engine", "ray", "-k", "0"], "-k must be > 0"),
        (
            ["ask", idx, "why?", "--engine", "ray", "--reader", str(tmp_path / "no-reader")],
            "no such checkpoint",
        ),
        (
            [
                "index",
                "build",
                str(q),
                "--out",
                str(tmp_path / "ib"),
                "--engine",
                "ray",
                "--ray-address",
                " ",
            ],
            "--ray-address: empty",
        ),
        (["serve", idx, "--ray-address", "auto"], "--ray-address: only with --engine ray"),
    ]
    assert_refused_before_heavy_imports(cases, cwd=tmp_path)
    assert not (tmp_path / "niah").exists() and not (tmp_path / "nb").exists()  # nothing was started


@pytest.fixture(params=["under-a-file", "read-only-folder"])
def unwritable(request, tmp_path) -> Path:
    """A folder no output can go into: a path below a plain file, or a folder without write permission."""
    if request.param == "under-a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    request.addfinalizer(lambda: ro.chmod(0o755))
    try:
        (ro / "probe").touch()
    except OSError:
        return ro
    pytest.skip("running as root: permissions do not stop writes (a read-only mount does; not made here)")


def test_an_unwritable_out_is_refused_before_any_work(idx, tmp_path, unwritable, capsys):
    corpus = Path(idx).parent / "corpus.jsonl"
    q = _questions(tmp_path / "q.jsonl", ["which module encodes base64?"])
    commands = [
        ["index", "build", str(corpus), "--out", str(unwritable / "idx"), "--quiet"],
        ["index", "build", str(corpus), "--out", str(unwritable), "--quiet"],
        ["tokenizer", "train", str(corpus), "--out", str(unwritable / "t.model"), "--quiet"],
        ["ask", idx, "--questions", str(q), "--out", str(unwritable / "a.jsonl"), "--no-reader", *NO_MODELS],
        [*NIAH, "--out", str(unwritable / "niah")],
        ["neighbours", idx, "--out", str(unwritable / "nb"), "--quiet"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = _err_line(capsys)
        assert f"--out {argv[argv.index('--out') + 1]}: " in err, err
    if unwritable.is_dir():
        assert not any(unwritable.iterdir())  # nothing was started in there


def test_an_interrupted_batch_keeps_the_answers_it_finished(idx, tmp_path):
    """SIGINT in the middle of `ask --questions`: exit 130, and --out holds every answer finished by
    then, whole lines in question order, with the meta saying how many were left."""
    n = 3000
    q = _questions(tmp_path / "q.jsonl", [f"what does module {i} encode?" for i in range(n)])
    out = tmp_path / "a.jsonl"
    argv = ["ask", idx, "--questions", str(q), "--out", str(out), "--quiet", "-k", "2", "--no-reader"]
    argv += NO_MODELS
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(  # SIGINT restored to its default: a background shell's job ignores it
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    partial = tmp_path / ".a.jsonl.tmp"  # atomic_path's temporary name, written line by line
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_text(encoding="utf-8").count("\n") >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert 3 <= len(lines) < n
    assert [x["id"] for x in lines] == [f"q{i}" for i in range(len(lines))]
    assert all(len(x["neighbours"]) == 2 for x in lines)
    meta = json.loads((tmp_path / "a.jsonl.meta.json").read_text())
    assert meta["answered"] == len(lines) and meta["unanswered"] == n - len(lines)
    assert not partial.exists()


def test_a_pasted_page_is_searched_as_its_first_words(idx, capsys):
    docs = [json.loads(line)["text"] for line in (Path(idx).parent / "corpus.jsonl").open()]
    text = " ".join(w for d in docs for w in d.split() if len(w) <= WORD_CHARS)
    page = (text * (100_000 // len(text) + 1))[:100_000]  # ~100 KB, ~14k words
    words = len(page.split())
    assert words > MAX_QUERY_WORDS * 10
    cascade = Cascade(Index.open(idx), CascadeConfig(medium="off", expensive="off", expand=False))
    res = cascade.search(page, k=2)
    assert res.query == page  # the question as asked ...
    searched = res.hops[0].query  # ... and what every stage read
    assert len(searched.split()) == MAX_QUERY_WORDS and page.startswith(searched)
    assert res.to_dict()["truncated"] == {
        "model": "query",
        "query_tokens": words,
        "max_tokens": MAX_QUERY_WORDS,
        "unit": "words",
    }
    assert cascade.search("base64 encoding", k=2).truncation is None
    # no spaces to count by: every WORD_CHARS characters count as a word
    blob = "x" * 100_000
    cut, t = bound_query(blob)
    assert len(cut) == MAX_QUERY_WORDS * WORD_CHARS and t.query_tokens == math.ceil(len(blob) / WORD_CHARS)
    # the CLI says so above the table
    assert main(["search", idx, page, "-k", "2", *NO_MODELS]) == 0
    assert f"note: query cut to its first {MAX_QUERY_WORDS} of {words} words" in capsys.readouterr().out


def test_engine_ray_without_the_ray_package_names_the_extra(idx, monkeypatch, capsys):
    """With ray not importable (sys.modules["ray"] = None hides it), --engine ray is refused in one
    line naming `pip install 'retro[ray]'`, on every command that has the flag."""
    import sys

    from pipelines.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    for argv in (
        ["search", idx, "which module encodes base64?", "--engine", "ray"],
        ["ask", idx, "which module encodes base64?", "--engine", "ray", "--no-reader"],
        ["index", "build", idx, "--out", idx, "--engine", "ray"],
        ["serve", idx, "--engine", "ray"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'retro[ray]'" in err, (argv, err)
