"""Haystack generators: determinism, bounded memory, needle placement, text folders, bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evals.filler import TextSource
from evals.haystack import HaystackConfig, depth_targets, write_haystack
from evals.needles import NeedleConfig, make_needles


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gen(
    tmp: Path, name: str, seed: int = 0, kind: str = "needles", n: int = 25, task: str = "single", **kw
) -> Path:
    ncfg = NeedleConfig(task=task)
    out = tmp / name
    write_haystack(
        HaystackConfig(kind=kind, tokens=kw.pop("tokens", 60_000), seed=seed, **kw),
        make_needles(ncfg, n, seed),
        out,
        ncfg,
    )
    return out


def _docs(out: Path) -> dict[str, str]:
    return {r["id"]: r["text"] for r in map(json.loads, (out / "corpus.jsonl").read_text().splitlines())}


def _needles(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "needles.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["noise", "words", "needles"])
def test_same_seed_same_bytes_different_seed_different(tmp_path, kind):
    a, b, c = _gen(tmp_path, "a", 0, kind), _gen(tmp_path, "b", 0, kind), _gen(tmp_path, "c", 1, kind)
    for f in ("corpus.jsonl", "needles.jsonl"):
        assert _sha(a / f) == _sha(b / f)
        assert _sha(a / f) != _sha(c / f)
    info = json.loads((a / "haystack.json").read_text())
    assert info["sha256"] == _sha(a / "corpus.jsonl")


def test_needles_placed_once_at_recorded_offsets_and_depths_spread(tmp_path):
    out = _gen(tmp_path, "h", n=100, task="multikey", tokens=100_000)
    docs = _docs(out)
    corpus = (out / "corpus.jsonl").read_text()
    recs = _needles(out)
    assert len(recs) == 400  # 100 asked + 3 distractor needles each
    for r in recs:
        assert docs[r["doc_id"]][r["offset"] : r["offset"] + r["length"]] == r["text"]
        assert corpus.count(r["text"]) == 1
        assert 0 <= r["depth"] <= 1
    asked = [r for r in recs if r["task"] != "distractor"]
    assert all(r["question"] and r["answers"] for r in asked)
    depths = sorted(r["depth"] for r in recs)
    assert depths[0] < 0.05 and depths[-1] > 0.95
    assert len({r["depth_bucket"] for r in recs}) == 11
    # every tenth of the haystack holds needles
    assert len({min(int(d * 10), 9) for d in depths}) == 10


def test_straddling_needles_cross_an_approximate_chunk_boundary(tmp_path):
    out = _gen(tmp_path, "s", n=60, kind="words", tokens=80_000)
    recs = _needles(out)
    planned = [r for r in recs if r["straddle"]]
    assert len(planned) == 30  # straddle_fraction 0.5
    for r in planned:
        b = r["boundary_char"]
        assert b % int(64 * 4.0) == 0
        assert r["offset"] < b < r["offset"] + r["length"], r
        assert r["straddles_approx"]
    assert not any(r["straddles_approx"] for r in recs if not r["straddle"])


def test_distractor_haystack_has_thousands_of_other_keys(tmp_path):
    out = _gen(tmp_path, "d", n=20, tokens=400_000)
    true_keys = {r["key"] for r in _needles(out)}
    lines = (out / "distractors.jsonl").read_text().splitlines()
    assert len(lines) > 700
    docs = _docs(out)
    for line in lines[:200]:
        d = json.loads(line)
        assert docs[d["doc_id"]][d["offset"] : d["offset"] + len(d["text"])] == d["text"]
        key = d["text"].split(" for ", 1)[1].split(" is: ")[0]
        assert key not in true_keys


def test_depth_targets_cover_buckets_across_trials():
    seen = {b for t in range(11) for b, _ in depth_targets(1, 11, t)}
    assert seen == set(range(11))
    ds = [d for _, d in depth_targets(100, 11)]
    assert min(ds) >= 0 and max(ds) <= 1 and len(set(ds)) == 100


def test_size_tracks_target(tmp_path):
    out = _gen(tmp_path, "z", kind="noise", tokens=50_000, n=1)
    info = json.loads((out / "haystack.json").read_text())
    assert 0.97 * 200_000 <= info["chars"] <= 1.03 * 200_000


def _folder(tmp: Path, n_docs: int) -> Path:
    d = tmp / "texts"
    (d / "sub").mkdir(parents=True)
    for i in range(n_docs):
        (d / ("sub" if i % 2 else "") / f"doc{i}.txt").write_text(f"Document {i} says hello. " * 40)
    with open(d / "more.jsonl", "w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"id": f"j{i}", "text": f"Record {i} is plain text. " * 40}) + "\n")
    return d


def test_text_folder_no_repeats_when_covered(tmp_path):
    src = _folder(tmp_path, 50)
    out = tmp_path / "t"
    info = write_haystack(
        HaystackConfig(kind="text", source=str(src), tokens=10_000, seed=3),
        make_needles(NeedleConfig(), 4, 3),
        out,
    )
    ids = list(_docs(out))
    assert len(ids) == len(set(ids)) and not any("~pass" in i for i in ids)
    assert info["warnings"] == []
    texts = list(_docs(out).values())
    assert len({t[:30] for t in texts}) == len(texts)  # no document content repeated


def test_text_folder_too_small_warns_and_records(tmp_path):
    src = _folder(tmp_path, 3)
    out = tmp_path / "t"
    with pytest.warns(UserWarning, match="documents repeat"):
        info = write_haystack(
            HaystackConfig(kind="text", source=str(src), tokens=20_000),
            make_needles(NeedleConfig(), 2, 0),
            out,
        )
    assert info["warnings"] and "documents repeat" in info["warnings"][0]
    assert json.loads((out / "haystack.json").read_text())["warnings"] == info["warnings"]
    assert any("~pass2" in i for i in _docs(out))


def test_bad_inputs(tmp_path):
    ns = make_needles(NeedleConfig(), 1, 0)
    with pytest.raises(ValueError, match="unknown haystack kind"):
        write_haystack(HaystackConfig(kind="bogus"), ns, tmp_path / "x")
    with pytest.raises(ValueError, match="no such file or folder"):
        TextSource(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no documents"):
        TextSource(tmp_path / "empty")
    with pytest.raises(ValueError, match="needs a folder"):
        write_haystack(HaystackConfig(kind="text"), ns, tmp_path / "y")


_RSS = textwrap.dedent("""
    import resource, sys
    from evals.haystack import HaystackConfig, write_haystack
    from evals.needles import NeedleConfig, make_needles
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ns = make_needles(NeedleConfig(), 100, 0)
    info = write_haystack(HaystackConfig(kind="needles", tokens=int(sys.argv[1])), ns, sys.argv[2])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(after - before, info["chars"])
""")


def test_memory_stays_flat_while_streaming(tmp_path):
    """20M characters of haystack use no more memory than 1M (peak RSS growth in a fresh process)."""
    growth = {}
    for tokens in (250_000, 5_000_000):
        res = subprocess.run(
            [sys.executable, "-c", _RSS, str(tokens), str(tmp_path / str(tokens))],
            capture_output=True,
            text=True,
            check=True,
        )
        kb, chars = map(int, res.stdout.split())
        growth[tokens] = kb
        (tmp_path / str(tokens) / "corpus.jsonl").unlink()
    assert chars >= 20_000_000
    assert growth[5_000_000] < growth[250_000] + 20_000, growth  # KiB: under 20 MB more for 20x the size
