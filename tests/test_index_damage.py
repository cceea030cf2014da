"""Damage done to an index after its build is found when it opens, named by file, through the CLI.

Truncation (any file of a shard, shard.json, the static table) is caught by the cheap size checks
every open makes: `retro index info` and `retro search` exit 2 with one line naming the file, no
traceback. Damage that keeps the size passes those checks and is caught by `retro index info
--verify`, which hashes every file. The index is the one tests/test_index_build.py builds (same
corpus and config), so in a full run its static table comes from the session cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from index.build import BuildConfig, build_index
from pipelines.cli import main


@pytest.fixture(scope="module")
def index_copy(tmp_path_factory, real_corpus) -> Path:
    folder = tmp_path_factory.mktemp("damage")
    cfg = BuildConfig(vocab_size=1000, dense="off", shard_chunks=400)
    build_index(real_corpus, folder / "built", cfg, quiet=True)
    shutil.copytree(folder / "built", folder / "copy")
    return folder / "copy"


def _damaged_files(index: Path) -> list[Path]:
    """Every file of the first shard (bm25/* included), its shard.json, and the static table."""
    shard = index / "shards" / "000000"
    files = [shard / name for name in json.loads((shard / "shard.json").read_text())["files"]]
    return [*files, shard / "shard.json", index / "static" / "table.npy"]


def _cli_error(args: list[str], capsys) -> str:
    """The one stderr line of a command that must fail with exit status 2."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("retro: error: ") and "Traceback" not in err, err
    return err


def test_every_file_kind_truncated_is_named_when_the_index_opens(index_copy, capsys):
    kinds = {p.name for p in _damaged_files(index_copy)}
    assert {"tokens.npy", "chunk_doc.npy", "docs.jsonl", "static.faiss", "shard.json", "table.npy"} <= kinds
    assert sum(p.parent.name == "bm25" for p in _damaged_files(index_copy)) >= 5
    for path in _damaged_files(index_copy):
        data = path.read_bytes()
        try:
            path.write_bytes(data[: len(data) // 2])
            for args in (
                ["index", "info", str(index_copy)],
                ["search", str(index_copy), "bzip2 compression"],
            ):
                err = _cli_error(args, capsys)
                assert str(path) in err and "damaged" in err, err
        finally:
            path.write_bytes(data)
    assert main(["index", "info", str(index_copy), "--verify"]) == 0  # restored: whole again
    capsys.readouterr()


def test_same_size_damage_is_found_by_verify(index_copy, capsys):
    for path in _damaged_files(index_copy):
        if path.name == "shard.json":
            continue  # its own damage is a JSON error at every open (above)
        data = path.read_bytes()
        at = len(data) - 1 - len(data) // 3  # past any .npy header: the cheap checks cannot see it
        try:
            path.write_bytes(data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :])
            assert main(["index", "info", str(index_copy)]) == 0  # sizes only: opens
            err = _cli_error(["index", "info", str(index_copy), "--verify"], capsys)
            assert str(path) in err and "sha256" in err, err
        finally:
            path.write_bytes(data)
    assert main(["index", "info", str(index_copy), "--verify"]) == 0
    assert "every sha256 matches: OK" in capsys.readouterr().out
