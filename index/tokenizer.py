"""The index's tokenizer: a sentencepiece model trained locally on a bounded sample of the corpus.

Trained so that decoding gives back the exact text (identity normalisation, whitespace kept,
byte fallback, no dummy prefix). That makes every token's byte length known from its id alone,
so a chunk's byte span in its document is a cumulative sum: no offsets need to be stored per token.

Special ids: 0 unk, 1 pad (fills a document's last chunk), 2 bos, 3 eos; "\\n" is one piece.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

UNK_ID, PAD_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MIN_VOCAB, MAX_VOCAB = 64, 1 << 22  # what train_tokenizer accepts (sentencepiece may need more pieces)
VOCAB_WARN_FRACTION = 0.5  # a trained vocabulary below this share of the request is a warning
_MAX_LINE_BYTES = 4096
_MAX_PIECE_CHARS = _MAX_LINE_BYTES // 4  # a training sentence: at most 4096 UTF-8 bytes
_SENTENCE_END = re.compile(r"[.!?](?=\s)")  # a cut after it leaves the space to the next sentence


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pieces(line: str, limit: int) -> Iterator[str]:
    """`line` cut into sentence-sized pieces of at most `limit` characters: at the last sentence end
    that fits, else at the last space, else anywhere. The whitespace after a cut starts the next piece,
    as it does inside the line, so the pieces train the same word-start tokens as whole lines."""
    while len(line) > limit:
        window = line[: limit + 1]  # one more character, so a sentence end at the limit is seen
        cut = max((m.end() for m in _SENTENCE_END.finditer(window)), default=0)
        if cut == 0:
            cut = window.rfind(" ", 1, limit + 1)
        if cut <= 0:
            cut = limit
        yield line[:cut]
        line = line[cut:]
    yield line


def _sample_lines(texts: Iterable[str], sample_chars: int, per_doc_chars: int) -> Iterator[str]:
    """Training sentences: at most `per_doc_chars` from each document, `sample_chars` in all. Lines
    longer than a sentence are cut into sentence-sized pieces rather than truncated, so a text with no
    newline (one 50 MB line) trains as large a vocabulary as the same text with newlines."""
    total = 0
    for text in texts:
        for line in text[:per_doc_chars].split("\n"):
            for piece in _pieces(line, _MAX_PIECE_CHARS):
                if piece.strip():
                    total += len(piece)
                    yield piece
        if total >= sample_chars:
            return


def check_vocab_size(vocab_size: int) -> None:
    """Raise ValueError unless `vocab_size` is one sentencepiece can be asked for."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"vocab_size={vocab_size}: must be between {MIN_VOCAB} and {MAX_VOCAB}")


def vocab_warning(got: int, requested: int) -> str | None:
    """A warning when a trained vocabulary is far below the request (under VOCAB_WARN_FRACTION of it):
    the sample was too small or too repetitive, and the static tier, one vector per piece, is then
    weak. sentencepiece treats the request as an upper bound and says nothing, so we do."""
    if got >= VOCAB_WARN_FRACTION * requested:
        return None
    return (
        f"tokenizer vocabulary {got:,} is far below the {requested:,} requested: the corpus sample is too "
        "small or too repetitive, so the static tier will be weak (index more text, ask for a smaller "
        "vocab_size, or give --tokenizer)"
    )


def train_tokenizer(
    texts: Iterable[str],
    out: str | os.PathLike,
    *,
    vocab_size: int = 32000,
    sample_chars: int = 20_000_000,
    per_doc_chars: int = 50_000,
    threads: int = 2,
) -> Path:
    """Train a unigram sentencepiece model on a bounded sample of `texts`; write it to `out` atomically.

    `vocab_size` is an upper bound: a small or repetitive sample gives fewer pieces instead of failing
    (sentencepiece's soft limit); one training pass either way. Returns the path written.
    """
    import sentencepiece as spm

    from util.runinfo import atomic_write_bytes

    check_vocab_size(vocab_size)
    lines = list(_sample_lines(texts, sample_chars, per_doc_chars))
    if sum(len(s) for s in lines) < 1000:
        raise ValueError(
            f"tokenizer training: the corpus sample has only {sum(len(s) for s in lines)} characters "
            "of text; need at least 1000"
        )
    model = io.BytesIO()
    try:
        _train(spm, lines, model, vocab_size, threads)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1].split("] ")[-1]
        raise ValueError(f"tokenizer training (vocab_size={vocab_size}) failed: {reason}") from None
    out = Path(out)
    atomic_write_bytes(out, model.getvalue())
    return out


def _train(spm, lines: list[str], model: io.BytesIO, vocab_size: int, threads: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,  # an upper bound: a small or repetitive sample gives fewer pieces
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        byte_fallback=True,
        split_digits=True,
        character_coverage=0.9995,
        user_defined_symbols=["\n", "\t"],
        unk_id=UNK_ID,
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=0,
        max_sentence_length=_MAX_LINE_BYTES * 4,
        num_threads=threads,
        minloglevel=2,
    )


class Tokenizer:
    """A loaded sentencepiece model with the few things the index needs from it."""

    def __init__(self, path: str | os.PathLike) -> None:
        import sentencepiece as spm

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: tokenizer model not found")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.load(str(self.path))
        except (OSError, RuntimeError):
            raise ValueError(f"{self.path}: not a sentencepiece model") from None
        self.sha256 = sha256_file(self.path)
        self.vocab_size = self._sp.get_piece_size()
        self.pad_id = PAD_ID if self._sp.id_to_piece(PAD_ID) == "<pad>" else self._sp.pad_id()

    @property
    def dtype(self) -> np.dtype:
        """uint16 when every id fits, else uint32."""
        return np.dtype(np.uint16 if self.vocab_size <= 1 << 16 else np.uint32)

    def encode(self, text: str) -> list[int]:
        """Token ids of one text."""
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str], threads: int = 2) -> list[list[int]]:
        """Token ids of many texts, encoded on `threads` threads."""
        return self._sp.encode(texts, num_threads=threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; pad ids are dropped."""
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        return self._sp.decode(ids[ids != self.pad_id].tolist())

    def decode_rows(self, rows: np.ndarray, threads: int = 2) -> list[str]:
        """Texts of many rows of token ids [n, L] (pad ids dropped), decoded on `threads` threads."""
        rows = np.asarray(rows, dtype=np.int64)
        return self._sp.decode([row[row != self.pad_id].tolist() for row in rows], num_threads=threads)

    @cached_property
    def byte_lengths(self) -> np.ndarray:
        """int64 [V]: how many bytes of the original UTF-8 text each token stands for."""
        sp = self._sp
        out = np.zeros(self.vocab_size, np.int64)
        for i in range(self.vocab_size):
            if sp.is_byte(i):
                out[i] = 1
            elif not (sp.is_control(i) or sp.is_unknown(i)):
                out[i] = len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
        return out

    def piece_texts(self) -> list[str]:
        """The surface text of every token (word-start mark as a space), '' for special ids."""
        sp = self._sp
        return [
            ""
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)
            else sp.id_to_piece(i).replace("\u2581", " ")
            for i in range(self.vocab_size)
        ]
