"""Copies of one page collapse into one neighbour (issue 14, item 9), over a real small index.

grep, egrep and fgrep are one man page; before the fix their identical chunks filled most of the top
k. The cascade now returns one row for the copies, listing the others, and k distinct rows; the
`collapse_duplicates` switch brings the copies back as separate rows.
"""

from __future__ import annotations

import json

import pytest

from index import Index
from pipelines.cascade import Cascade
from pipelines.cascade_config import CascadeConfig, cascade_config
from pipelines.cli import main
from pipelines.dense import DenseEncoder, load_default_model
from pipelines.duplicates import NEAR_DUPLICATE_JACCARD, collapse, words_of
from pipelines.results import Neighbour
from tests.conftest import build_small_index, stdlib_docs

PAGE = (
    "Search every input file for lines that contain a match to the given patterns. By default the "
    "program prints the matching lines. When the extended regular expression option is given, "
    "the patterns are read as extended regular expressions; the fixed strings option reads them as "
    "a list of fixed strings separated by newlines, any of which is to be matched. The invert match "
    "option selects the lines that do not match, and the count option prints only a count of the "
    "matching lines for each input file. The recursive option reads all files under each directory."
)
COPIES = ("grep", "egrep", "fgrep")
QUERY = "print only a count of matching lines for each input file, or select lines that do not match"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """~12 stdlib-docstring documents and three copies of one page under different ids."""
    docs = [{"id": d["id"], "text": d["text"][:1500]} for d in stdlib_docs(limit=10)]
    for pos, name in zip((2, 5, 8), COPIES, strict=True):
        docs.insert(pos, {"id": name, "text": PAGE})
    return Index.open(build_small_index(docs, tmp_path_factory.mktemp("dups"), vocab_size=800))


@pytest.fixture(scope="module")
def encoder():
    return DenseEncoder(load_default_model())


def _key(n: Neighbour) -> tuple[str, ...]:
    return words_of(n.text)


def test_copies_collapse_into_one_row_and_k_distinct_rows_come_back(index, encoder):
    assert CascadeConfig().collapse_duplicates is True  # on by default
    res = Cascade(index, CascadeConfig(), encoder=encoder).search(QUERY, k=5)
    rows = res.neighbours
    assert len(rows) == 5
    assert len({_key(n) for n in rows}) == 5  # k distinct texts
    top = rows[0]
    assert top.doc_id in COPIES
    assert {top.doc_id, *(d.doc_id for d in top.duplicates)} == set(COPIES)
    assert len(top.duplicates) == 2
    for d in top.duplicates:  # each copy is the same span of its own document
        assert (d.char_start, d.char_end) == (top.char_start, top.char_end) and d.chunk != top.chunk
        assert index.neighbour_text([d.chunk])[0] == top.text
    # no copy comes back as a row of its own, and the stage's own list holds k ids
    listed = {d.chunk for n in rows for d in n.duplicates}
    assert not listed & {n.chunk for n in rows}
    assert len(res.hops[0].stages["expensive"].ids) == 5
    # the JSON carries the sources and reads back into the same typed neighbour
    rec = json.loads(res.to_json())["neighbours"][0]
    assert {d["doc_id"] for d in rec["duplicates"]} == set(COPIES) - {top.doc_id}
    assert Neighbour.from_dict(rec) == top


def test_switch_off_returns_the_copies_separately(index, encoder):
    cfg = cascade_config(None, ["collapse_duplicates=false"])
    assert cfg.collapse_duplicates is False
    rows = Cascade(index, cfg, encoder=encoder).search(QUERY, k=5).neighbours
    assert len(rows) == 5 and not any(n.duplicates for n in rows)
    copies = [n for n in rows if n.doc_id in COPIES and n.text == rows[0].text]
    assert {n.doc_id for n in copies} == set(COPIES)  # three rows, one text


def test_cli_table_marks_the_collapsed_row(index, capsys):
    idx = str(index.path)
    assert main(["search", idx, QUERY, "-k", "4"]) == 0
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    assert "(+2 same)" in first
    assert main(["search", idx, QUERY, "-k", "4", "--json", "--set", "collapse_duplicates=false"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert sum(n["doc_id"] in COPIES for n in rec["neighbours"]) >= 3
    assert all(n["duplicates"] == [] for n in rec["neighbours"])


def test_what_counts_as_the_same_text():
    one_word = PAGE.replace("program", "tool")
    texts = [PAGE, "  " + PAGE.upper().replace(" ", "\n  "), one_word, "A different page about tar archives."]
    kept, folded = collapse([10, 11, 12, 13], texts, k=3)
    assert kept == [0, 3] and folded == {10: (11, 12)}  # case, spacing and one changed word fold in
    kept, folded = collapse([10, 11, 12, 13], texts, k=3, threshold=1.01)
    assert kept == [0, 2, 3] and folded == {10: (11,)}  # identical words always fold, even then
    half = " ".join(PAGE.split()[: len(PAGE.split()) // 2]) + " and then it continues with other words"
    assert collapse([1, 2], [PAGE, half], k=2)[0] == [0, 1]  # a shared start is not the same text
    assert 0.5 < NEAR_DUPLICATE_JACCARD < 1.0
    # the cut keeps the k best distinct texts; copies ranked past the cut still fold into their row
    kept, folded = collapse([1, 2, 3, 4], ["a b c d", "e f g h", "x y z w", "a b c d"], k=2)
    assert kept == [0, 1] and folded == {1: (4,)}
