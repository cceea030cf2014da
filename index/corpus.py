"""Read a corpus as a stream of documents: a file or a folder of .txt/.md, .jsonl and .parquet.

Memory stays bounded whatever the corpus size: files are read one at a time, jsonl line by line,
parquet batch by batch, and a huge text file is cut into parts of at most `max_doc_chars`
characters (at a newline where possible) whose `char_offset` says where each part starts.

Bad input never crashes the stream. It is counted in an `InputReport` with file:line examples:
empty files, binary files, invalid UTF-8 (replaced with U+FFFD and counted), jsonl lines that are
not JSON objects or have no string `text`, parquet files without a `text` column, unsupported
extensions. A missing path is an error (FileNotFoundError). Found by fuzzing (tests/test_fuzz_readers.py)
and handled: a jsonl line nested too deeply for `json` (a RecursionError, once fatal), a UTF-8 byte
order mark before the first line (that line was lost as "not JSON"), and `\ud800`-style escapes of
lone surrogates, which no UTF-8 file can hold (replaced with U+FFFD and counted; the build once
crashed on them).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".parquet")
_SNIFF_BYTES = 8192
_MAX_EXAMPLES = 20


@dataclasses.dataclass(frozen=True)
class Document:
    """One document of the corpus, as the index records it."""

    doc_id: str  # the jsonl `id`, the parquet `id`, else "<relative path>" or "<relative path>:<line>"
    source: str  # the file it came from (absolute path)
    line: int | None  # 1-based jsonl line / parquet row; None for text files
    char_offset: int  # where `text` starts in the source document (parts of a large text file)
    text: str


@dataclasses.dataclass
class InputReport:
    """Counts of what was read and what was skipped or repaired, with file:line examples."""

    files: int = 0
    documents: int = 0
    chars: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: list[str] = dataclasses.field(default_factory=list)

    def warn(self, kind: str, where: str, n: int = 1) -> None:
        """Count `n` occurrences of problem `kind`, keeping the first examples as 'where: kind'."""
        self.counts[kind] = self.counts.get(kind, 0) + n
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{where}: {kind}")

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "chars": self.chars,
            "warnings": dict(sorted(self.counts.items())),
            "examples": list(self.examples),
        }

    @property
    def total_warnings(self) -> int:
        return sum(self.counts.values())


class _Utf8Counter:
    """A codecs error handler that replaces invalid bytes with U+FFFD and counts them."""

    def __init__(self) -> None:
        self.count = 0
        self.name = f"retro-count-{id(self)}"
        codecs.register_error(self.name, self._handle)

    def _handle(self, err: UnicodeDecodeError) -> tuple[str, int]:
        self.count += err.end - err.start
        return "\ufffd", err.end

    def decode(self, data: bytes) -> str:
        return data.decode("utf-8", errors=self.name)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what a JSON escape can give and UTF-8 cannot hold
LONE_SURROGATES = "invalid Unicode (lone surrogate escapes replaced)"


def json_line(line: str) -> object:
    """One line of a jsonl file parsed, or a ValueError saying why not (one line): nesting too deep
    for `json` is an error, not a RecursionError."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(e.msg) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def replace_lone_surrogates(text: str) -> tuple[str, int]:
    """(`text` with each lone surrogate replaced by U+FFFD, how many there were)."""
    return _LONE_SURROGATE.subn("\ufffd", text)


def list_corpus_files(path: str | os.PathLike) -> list[Path]:
    """The corpus files under `path` (a file, or a folder searched recursively), in a stable order."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or directory")
    if root.is_file():
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    return files


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head


def _relname(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if root.is_dir() else path.name


class CorpusReader:
    """Iterate the documents of a corpus; `report` fills in as the iteration goes.

    Args:
      path: a file or a folder.
      max_doc_chars: text files longer than this are cut into parts (bounded memory).
    """

    def __init__(self, path: str | os.PathLike, *, max_doc_chars: int = 1 << 22) -> None:
        if max_doc_chars < 1024:
            raise ValueError(f"max_doc_chars={max_doc_chars}: must be at least 1024")
        self.root = Path(path)
        self.files = list_corpus_files(self.root)
        self.max_doc_chars = max_doc_chars
        self.report = InputReport()
        self._utf8 = _Utf8Counter()

    def __iter__(self) -> Iterator[Document]:
        for path in self.files:
            suffix = path.suffix.lower()
            where = str(path)
            if suffix not in SUFFIXES:
                self.report.warn(
                    f"unsupported extension {suffix or '(none)'} (skipped; use {', '.join(SUFFIXES)})", where
                )
                continue
            self.report.files += 1
            if path.stat().st_size == 0:
                self.report.warn("empty file (skipped)", where)
                continue
            with open(path, "rb") as f:
                head = f.read(_SNIFF_BYTES)
            if suffix != ".parquet" and _is_binary(head):
                self.report.warn("binary file (skipped)", where)
                continue
            reader = {".jsonl": self._read_jsonl, ".parquet": self._read_parquet}.get(suffix, self._read_text)
            for doc in reader(path):
                self.report.documents += 1
                self.report.chars += len(doc.text)
                yield doc

    # -- text files -------------------------------------------------------------------------------
    def _read_text(self, path: Path) -> Iterator[Document]:
        name = _relname(path, self.root)
        decoder = codecs.getincrementaldecoder("utf-8")(errors=self._utf8.name)
        before = self._utf8.count
        pending, offset, part = "", 0, 0
        with open(path, "rb") as f:
            while True:
                block = f.read(1 << 20)
                pending += decoder.decode(block, final=not block)
                while len(pending) > self.max_doc_chars:
                    cut = pending.rfind("\n", 0, self.max_doc_chars) + 1 or self.max_doc_chars
                    yield Document(f"{name}#{part}", str(path.resolve()), None, offset, pending[:cut])
                    pending, offset, part = pending[cut:], offset + cut, part + 1
                if not block:
                    break
        bad = self._utf8.count - before
        if bad:
            self.report.warn(f"invalid UTF-8 ({bad} bytes replaced)", str(path), bad)
        if not pending.strip():
            if part == 0:
                self.report.warn("no text (skipped)", str(path))
            return
        yield Document(f"{name}#{part}" if part else name, str(path.resolve()), None, offset, pending)

    # -- jsonl ------------------------------------------------------------------------------------
    def _read_jsonl(self, path: Path) -> Iterator[Document]:
        name = _relname(path, self.root)
        source = str(path.resolve())
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                where = f"{path}:{lineno}"
                if lineno == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                if not raw.strip():
                    continue
                before = self._utf8.count
                line = self._utf8.decode(raw)
                if self._utf8.count > before:
                    self.report.warn(
                        f"invalid UTF-8 ({self._utf8.count - before} bytes replaced)",
                        where,
                        self._utf8.count - before,
                    )
                try:
                    obj = json_line(line)
                except ValueError:
                    self.report.warn("not JSON (line skipped)", where)
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    self.report.warn("no string field 'text' (line skipped)", where)
                    continue
                if not obj["text"].strip():
                    self.report.warn("empty text (line skipped)", where)
                    continue
                doc_id = obj.get("id")
                doc_id = f"{name}:{lineno}" if doc_id is None else str(doc_id)
                text, bad = replace_lone_surrogates(obj["text"])
                doc_id, bad_id = replace_lone_surrogates(doc_id)
                if bad + bad_id:
                    self.report.warn(LONE_SURROGATES, where, bad + bad_id)
                yield Document(doc_id, source, lineno, 0, text)

    # -- parquet ----------------------------------------------------------------------------------
    def _read_parquet(self, path: Path) -> Iterator[Document]:
        import pyarrow.parquet as pq

        name = _relname(path, self.root)
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            self.report.warn(f"not a readable parquet file ({type(e).__name__}) (skipped)", str(path))
            return
        columns = set(pf.schema_arrow.names)
        if "text" not in columns:
            self.report.warn(
                f"no 'text' column (has: {', '.join(sorted(columns)) or 'none'}) (skipped)", str(path)
            )
            return
        wanted = ["text"] + (["id"] if "id" in columns else [])
        row = 0
        for batch in pf.iter_batches(batch_size=1024, columns=wanted):
            texts = batch.column("text").to_pylist()
            ids = batch.column("id").to_pylist() if "id" in wanted else [None] * len(texts)
            for text, doc_id in zip(texts, ids, strict=True):
                row += 1
                if not isinstance(text, str) or not text.strip():
                    self.report.warn("empty or non-string text (row skipped)", f"{path}:{row}")
                    continue
                yield Document(
                    f"{name}:{row}" if doc_id is None else str(doc_id), str(path.resolve()), row, 0, text
                )


def corpus_bytes(path: str | os.PathLike) -> int:
    """Total size in bytes of the corpus files under `path` (for sizing the index before reading)."""
    return sum(p.stat().st_size for p in list_corpus_files(path) if p.suffix.lower() in SUFFIXES)
