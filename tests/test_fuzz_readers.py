"""Property tests (hypothesis) for the readers of user files: the corpus reader (.jsonl, .txt,
.parquet; index/corpus.py) and the questions file of `retro ask --questions` (pipelines/search_cli.py).

Each test writes a file of good records mixed with bad lines of every kind (not JSON, JSON nested
past Python's recursion limit, not an object, a field of the wrong type, an empty text, a missing
id), any Unicode (NUL, U+2028, "\\r" inside the line, emoji), CRLF endings, a byte order mark, and
checks: nothing but the documented errors is raised; every bad line is reported with file:line;
every good record's text comes back exactly, in order. Example counts are bounded (the fast set
stays fast: about 10 s for the file); the inputs that found bugs are kept as @example.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from index.corpus import LONE_SURROGATES, CorpusReader
from pipelines.search_cli import read_questions

# no example database: nothing is written into the checkout
FUZZ = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# text with at least one non-space character: a record a reader must keep (surrogates excluded:
# no file can hold them; they are tested as escapes below)
words = st.text(min_size=1, max_size=60).filter(lambda t: t.strip())
blank = st.text(" \t", max_size=3)
not_json = st.text(max_size=30).map(lambda t: "{oops " + t.replace("\n", " ").replace("\r", " "))
too_deep = st.integers(2_000, 60_000).map(lambda n: "[" * n + "]" * n)
not_object = st.sampled_from(["[1, 2]", '"text"', "42", "null", "true"])
json_value = st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=3))


def _dumps(obj: object, ascii_only: bool) -> str:
    return json.dumps(obj, ensure_ascii=ascii_only)


def _file(lines: list[str], crlf: bool, bom: bool, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="retro-fuzz-"))
    path = folder / f"input{suffix}"
    data = ("\r\n" if crlf else "\n").join(lines).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data + b"\n")
    return path


# -- corpus .jsonl ----------------------------------------------------------------------------------
good_doc = st.builds(
    lambda text, doc_id, ascii_only: ("good", text, _dumps({"id": doc_id, "text": text}, ascii_only)),
    words,
    st.one_of(st.none(), st.text(max_size=10), st.integers()),
    st.booleans(),
)
bad_doc = st.one_of(
    not_json.map(lambda s: ("bad", "not JSON", s)),
    too_deep.map(lambda s: ("bad", "not JSON", s)),
    not_object.map(lambda s: ("bad", "no string field", s)),
    json_value.map(lambda v: ("bad", "no string field", json.dumps({"text": v}))),
    words.map(lambda t: ("bad", "no string field", json.dumps({"title": t}))),
    blank.map(lambda t: ("bad", "empty text", json.dumps({"text": t + "\n"}))),
)
doc_lines = st.lists(st.one_of(good_doc, bad_doc, blank.map(lambda s: ("blank", None, s))), max_size=25)


@FUZZ
@given(doc_lines, st.booleans(), st.booleans())
@example(
    [("bad", "not JSON", "[" * 50_000 + "]" * 50_000), ("good", "after", '{"text": "after"}')], False, False
)
@example([("good", "first", '{"text": "first"}')], False, True)  # a byte order mark: line 1 was lost
def test_jsonl_corpus_keeps_good_records_and_reports_bad_lines(lines, crlf, bom):
    path = _file([line for _, _, line in lines], crlf, bom, ".jsonl")
    reader = CorpusReader(path)
    docs = list(reader)
    good = [(n, text) for n, (kind, text, _) in enumerate(lines, start=1) if kind == "good"]
    assert [(d.line, d.text) for d in docs] == good
    bad = [(n, why) for n, (kind, why, _) in enumerate(lines, start=1) if kind == "bad"]
    assert reader.report.total_warnings == len(bad) == sum(reader.report.counts.values())
    for (n, why), shown in zip(bad, reader.report.examples, strict=False):
        assert shown.startswith(f"{path}:{n}: {why}"), (shown, n, why)


def test_jsonl_corpus_replaces_escaped_lone_surrogates_and_counts_them(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "x\\udc80", "text": "a \\ud800 b"}\n{"text": "fine"}\n')
    reader = CorpusReader(path)
    docs = list(reader)
    assert [(d.doc_id, d.text) for d in docs] == [("x\ufffd", "a \ufffd b"), ("c.jsonl:2", "fine")]
    assert reader.report.counts == {LONE_SURROGATES: 2}
    assert docs[0].text.encode("utf-8")  # the build can write it


def test_huge_jsonl_line_and_huge_text_file_are_read_whole(tmp_path):
    huge = "lighthouse " * 400_000  # 4.4 MB in one line / one file
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": huge}) + "\n")
    (tmp_path / "b.txt").write_text(huge)
    reader = CorpusReader(tmp_path, max_doc_chars=1 << 20)
    docs = list(reader)
    assert docs[0].text == huge and "".join(d.text for d in docs[1:]) == huge
    assert all(len(d.text) <= 1 << 20 for d in docs[1:]) and reader.report.total_warnings == 0


# -- corpus .txt ------------------------------------------------------------------------------------
@FUZZ
@given(st.text(max_size=3000), st.sampled_from([1024, 1500, 1 << 22]))
@example("a\x00b", 1024)
@example("x" * 2500 + "\n  \n ", 1024)
def test_text_file_parts_add_up_to_the_file(text, max_doc_chars):
    path = _file([], False, False, ".txt")
    path.write_bytes(text.encode("utf-8"))
    reader = CorpusReader(path, max_doc_chars=max_doc_chars)
    docs = list(reader)
    joined = "".join(d.text for d in docs)
    if not text:
        assert not docs and reader.report.counts == {"empty file (skipped)": 1}
    elif "\x00" in text:
        assert not docs and reader.report.counts == {"binary file (skipped)": 1}
    elif not text.strip():
        assert not docs and reader.report.counts == {"no text (skipped)": 1}
    else:  # the parts are the text in order, each where char_offset says (a blank tail may drop)
        assert joined == text[: len(joined)] and not text[len(joined) :].strip()
        assert [d.char_offset for d in docs] == [
            len("".join(x.text for x in docs[:i])) for i in range(len(docs))
        ]
        assert all(len(d.text) <= max_doc_chars for d in docs) and reader.report.total_warnings == 0


# -- corpus .parquet --------------------------------------------------------------------------------
@FUZZ
@given(st.lists(st.one_of(words, blank, st.none()), max_size=30), st.booleans())
def test_parquet_keeps_text_rows_and_reports_the_others(texts, with_ids):
    path = _file([], False, False, ".parquet")
    columns = {"text": pa.array(texts, pa.string())}
    if with_ids:
        columns["id"] = pa.array([f"r{i}" for i in range(len(texts))])
    pq.write_table(pa.table(columns), path)
    reader = CorpusReader(path)
    docs = list(reader)
    good = [(i, t) for i, t in enumerate(texts, start=1) if t is not None and t.strip()]
    assert [(d.line, d.text) for d in docs] == good
    assert [d.doc_id for d in docs] == [f"r{i - 1}" if with_ids else f"input.parquet:{i}" for i, _ in good]
    skipped = [i for i, t in enumerate(texts, start=1) if t is None or not t.strip()]
    assert reader.report.total_warnings == len(skipped)
    assert (
        reader.report.examples
        == [f"{path}:{i}: empty or non-string text (row skipped)" for i in skipped][:20]
    )


@settings(max_examples=10, deadline=None, database=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5))
def test_parquet_text_column_of_another_type_is_reported_not_fatal(values):
    path = _file([], False, False, ".parquet")
    pq.write_table(pa.table({"text": values}), path)
    reader = CorpusReader(path)
    assert list(reader) == [] and reader.report.total_warnings == len(values)


# -- questions file ---------------------------------------------------------------------------------
good_question = st.builds(
    lambda qid, q, ascii_only: ("good", (qid, q), _dumps({"id": qid, "question": q}, ascii_only)),
    st.one_of(st.integers(), st.text(max_size=10)),
    words,
    st.booleans(),
)
bad_question = st.one_of(
    not_json.map(lambda s: ("bad", "not valid JSON", s)),
    too_deep.map(lambda s: ("bad", "not valid JSON", s)),
    not_object.map(lambda s: ("bad", "expected a JSON object", s)),
    words.map(lambda q: ("bad", "missing id", json.dumps({"question": q}))),
    json_value.map(lambda v: ("bad", "missing or empty question", json.dumps({"id": 1, "question": v}))),
    blank.map(lambda q: ("bad", "missing or empty question", json.dumps({"id": 1, "question": q}))),
    st.just(("bad", "the question escapes a lone surrogate", '{"id": 1, "question": "a \\ud800"}')),
)
question_lines = st.lists(
    st.one_of(good_question, bad_question, blank.map(lambda s: ("blank", None, s))), max_size=25
)


@FUZZ
@given(question_lines, st.booleans(), st.booleans())
@example(
    [("bad", "not valid JSON", "[" * 50_000), ("good", (2, "q"), '{"id": 2, "question": "q"}')], False, False
)
@example([("good", (1, "first"), '{"id": 1, "question": "first"}')], False, True)  # byte order mark
@example(
    [("good", (1, "x"), '{"id": 1,\r"question": "x"}'), ("good", (2, "y"), '{"id": 2, "question": "y"}')],
    False,
    False,
)
def test_questions_file_keeps_good_questions_and_reports_bad_lines(lines, crlf, bom):
    path = _file([line for _, _, line in lines], crlf, bom, ".jsonl")
    good, bad = read_questions(str(path))
    assert good == [q for kind, q, _ in lines if kind == "good"]
    want = [(n, why) for n, (kind, why, _) in enumerate(lines, start=1) if kind == "bad"]
    assert len(bad) == len(want)
    for (n, why), shown in zip(want, bad, strict=True):
        assert shown.startswith(f"{path}:{n}: {why}"), (shown, n, why)


def test_questions_file_with_bytes_that_are_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"id": 1, "question": "caf\xe9?"}\n{"id": 2, "question": "ok?"}\n')
    good, bad = read_questions(str(path))
    assert good == [(2, "ok?")] and bad == [f"{path}:1: not valid UTF-8 (byte 27 of the line)"]
