"""Reading corpora: every supported format, and every kind of bad input counted, never fatal."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from index.corpus import CorpusReader
from index.tokenizer import Tokenizer, train_tokenizer


def _read(path, **kw):
    reader = CorpusReader(path, **kw)
    return list(reader), reader.report


def test_folder_of_every_format_in_stable_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("plain text document")
    (tmp_path / "b" / "c.md").write_text("# heading\nmarkdown body")
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"id": "x1", "text": "first"}) + "\n" + json.dumps({"text": "second"}) + "\n"
    )
    pq.write_table(pa.table({"text": ["row one", "row two"], "id": ["p1", "p2"]}), tmp_path / "e.parquet")
    docs, report = _read(tmp_path)
    assert [d.doc_id for d in docs] == ["a.txt", "b/c.md", "x1", "d.jsonl:2", "p1", "p2"]
    assert [d.line for d in docs] == [None, None, 1, 2, 1, 2]
    assert docs[1].text == "# heading\nmarkdown body"
    assert report.documents == 6 and report.files == 4 and report.total_warnings == 0


def test_bad_input_is_counted_with_file_and_line(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.txt").write_bytes(b"\x89PNG\x00\x00\x01binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ok".encode("latin-1"))
    (tmp_path / "lines.jsonl").write_bytes(
        b'{"text": "good"}\nnot json\n{"title": "no text"}\n["list"]\n{"text": "bad \xff byte"}\n'
    )
    (tmp_path / "notes.csv").write_text("a,b\n")
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "no_text.parquet")
    docs, report = _read(tmp_path)
    assert [d.text for d in docs] == ["caf\ufffd ok", "good", "bad \ufffd byte"]
    c = report.counts
    assert c["empty file (skipped)"] == 1
    assert c["binary file (skipped)"] == 1
    assert c["not JSON (line skipped)"] == 1
    assert c["no string field 'text' (line skipped)"] == 2
    assert sum(n for k, n in c.items() if k.startswith("invalid UTF-8")) == 2
    assert any(k.startswith("unsupported extension .csv") for k in c)
    assert any(k.startswith("no 'text' column") for k in c)
    assert f"{tmp_path / 'lines.jsonl'}:2: not JSON (line skipped)" in report.examples
    assert f"{tmp_path / 'lines.jsonl'}:3: no string field 'text' (line skipped)" in report.examples


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir: no such file"):
        CorpusReader(tmp_path / "no_such_dir")


def test_large_text_file_is_split_into_exact_parts(tmp_path):
    text = "".join(f"line {i} with some words ünïcode\n" for i in range(3000))
    (tmp_path / "big.txt").write_text(text)
    docs, _ = _read(tmp_path / "big.txt", max_doc_chars=10_000)
    assert len(docs) > 5
    assert all(len(d.text) <= 10_000 for d in docs)
    assert "".join(d.text for d in docs) == text
    assert all(text[d.char_offset : d.char_offset + len(d.text)] == d.text for d in docs)
    assert all(d.text.endswith("\n") for d in docs)


def test_tokenizer_round_trips_exactly_and_knows_byte_lengths(tmp_path, real_corpus):
    import numpy as np

    texts = [json.loads(line)["text"] for line in open(real_corpus)]
    path = train_tokenizer(texts, tmp_path / "tok.model", vocab_size=800)
    tok = Tokenizer(path)
    assert tok.dtype == np.uint16 and 200 < tok.vocab_size <= 800
    samples = texts[:5] + ["Ünïcödé — ☃ snow\n\ttabs  and   spaces", "日本語のテキスト"]
    for text in samples:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert int(tok.byte_lengths[np.asarray(ids)].sum()) == len(text.encode("utf-8"))
    with pytest.raises(ValueError, match="vocab_size=70.*failed: Vocabulary size is smaller"):
        train_tokenizer(texts, tmp_path / "t3.model", vocab_size=70)
    with pytest.raises(ValueError, match="at least 1000"):
        train_tokenizer(["tiny"], tmp_path / "t2.model", vocab_size=100)


def test_tokenizer_train_cli(tmp_path, real_corpus):
    from pipelines.cli import main

    out = tmp_path / "cli.model"
    assert main(["tokenizer", "train", str(real_corpus), "--vocab", "600", "--out", str(out), "--quiet"]) == 0
    assert Tokenizer(out).vocab_size <= 600
    assert main(["tokenizer", "train", str(tmp_path / "missing"), "--out", str(out)]) == 2
