"""The committed man-page question file is well-formed (no corpus needed): bench/data/manpage_qa.jsonl."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "data" / "manpage_qa.jsonl"


def _bench():
    spec = importlib.util.spec_from_file_location("manpage_qa", ROOT / "bench" / "manpage_qa.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]


def test_count_ids_and_splits(rows):
    m = _bench()
    assert len(rows) >= 100
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids), "duplicate ids"
    splits = {r["split"] for r in rows}
    assert splits == {"dev", "test"}
    for r in rows:
        assert r["split"] == m.split_of(r["id"]), f"{r['id']}: split is not the seeded hash of its id"
    n_dev = sum(r["split"] == "dev" for r in rows)
    assert 0.3 < n_dev / len(rows) < 0.7


def test_records_are_complete(rows):
    m = _bench()
    for r in rows:
        assert set(r) >= {"id", "question", "answers", "command", "evidence", "doc_id", "split"}, r["id"]
        assert isinstance(r["answers"], list) and r["answers"], r["id"]
        assert r["question"].strip().endswith("?"), r["id"]
        assert r["evidence"].strip() == r["evidence"], f"{r['id']}: evidence has outer whitespace"
        for a in r["answers"]:
            assert a.startswith(("-", "+")), f"{r['id']}: answer {a!r} is not an option"
            assert a in r["evidence"], f"{r['id']}: answer {a!r} not inside the evidence"
        # the evidence starts with the option line, so its first line names an accepted spelling
        first = r["evidence"].split("\n")[0]
        assert any(a in first for a in r["answers"]), r["id"]
        assert m.check_row(r) == [], (r["id"], m.check_row(r))


def test_questions_use_other_words(rows):
    m = _bench()
    for r in rows:
        shared = m.shared_words(r["question"], r["evidence"], r["command"])
        assert len(shared) <= 1, f"{r['id']}: shares {sorted(shared)} with its evidence"
        # and no question spells out one of its own answers
        for a in r["answers"]:
            assert not m.contains_match(r["question"], [a]), f"{r['id']}: question contains {a!r}"


def test_match_helpers():
    m = _bench()
    answers = ["-h", "--dereference"]
    assert m.exact_match(" --dereference. ", answers)
    assert m.exact_match("`-h`", answers)
    assert not m.exact_match("dereference", answers)  # dashes are part of the answer
    assert not m.exact_match("--hard-dereference", answers)
    assert m.exact_match("-h, --dereference", answers)  # the option line's own spellings
    assert not m.exact_match("-h, --hard-dereference", answers)
    assert not m.exact_match(None, answers) and not m.contains_match(None, answers)
    assert m.contains_match("use tar -h to follow links", answers)
    assert not m.contains_match("use tar --hard-dereference", answers)
    assert not m.contains_match("use -hv", ["-h"])


def test_evidence_cutting_on_a_synthetic_page():
    m = _bench()
    page = (
        "OPTIONS\n"
        "       -k, --keep\n"
        "              Don't delete the input files.  More text here follows on.\n\n"
        "       -v     be loud; say what is done for every file that goes through\n"
        "              the machinery.\n\n"
        "       --keep option and more running text that is not an option line.\n"
        "       --other\n"
        "              Something else.\n"
    )
    ev, header = m.cut_evidence(page, "-k, --keep")
    assert header == "-k, --keep"
    assert ev.startswith("-k, --keep\n") and ev.endswith("More text here follows on.")
    assert m.answers_of(header) == ["-k", "--keep"]
    ev, header = m.cut_evidence(page, "-v")
    assert header == "-v" and ev.endswith("the machinery.")
    assert m.answers_of("-f, --file=ARCHIVE") == ["-f", "--file", "--file=ARCHIVE"]
    assert m.answers_of("-C NUM, -NUM, --context=NUM") == ["-C", "--context", "--context=NUM"]
    assert m.answers_of("-N or --LINE-NUMBERS") == ["-N", "--LINE-NUMBERS"]


def test_answer_questions_with_a_stub_reader():
    m = _bench()

    class Stub:
        """Answers with the first option-looking word of the first neighbour it is given."""

        def answer(self, question, neighbour_texts):
            import re
            from types import SimpleNamespace

            hit = re.search(r"(?<![\w-])--?[A-Za-z][\w-]*", neighbour_texts[0]) if neighbour_texts else None
            return SimpleNamespace(text=hit.group(0) if hit else "")

    rows = [
        {
            "id": "a",
            "split": "dev",
            "question": "q1?",
            "answers": ["-h", "--dereference"],
            "gold_text": "-h, --dereference Follow symlinks",
        },
        {"id": "b", "split": "test", "question": "q2?", "answers": ["-x"], "gold_text": "-x extract"},
    ]
    top = {"q1?": ["--list lists", "-h, --dereference"], "q2?": ["-z gzip"]}
    out = m.answer_questions(Stub(), rows, lambda q: top[q])
    assert out["oracle"]["all"] == {"n": 2, "em": 1.0, "contains": 1.0}
    assert out["cascade"]["all"]["em"] == 0.0
    assert out["cascade"]["dev"]["n"] == 1 and out["cascade"]["test"]["n"] == 1
    assert [s["cascade_answer"] for s in out["samples"]] == ["--list", "-z"]
