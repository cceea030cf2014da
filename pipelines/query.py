"""What a query may be: words to search for, and no longer than a bound every tier can afford.

Checked and cut once, before BM25, the static tier, the expansion and the dense models, so every
tier reads the same text and a pasted page cannot stall the cascade (a 100 KB query took 195 s,
145 s of it in the cheap stage, whose cost grows with the query's words: BM25 terms and bigrams,
expansion units). The cut is reported in the result's `truncated` field (`results.Truncation`).

This module imports nothing heavy: the CLI validates queries with it before any model loads.
"""

from __future__ import annotations

import re

from pipelines.results import Truncation

# Words a query keeps; the rest is cut. The dense model reads at most max_query_tokens (256) WordPiece
# tokens, about 200 English words (~1.3 tokens a word), so nothing it could read is lost to the cut,
# while BM25 and the expansion, which read every word, stay at question-sized cost.
MAX_QUERY_WORDS = 200
# A run of non-space characters longer than this (a hash, a base64 blob, a pasted line without spaces)
# counts as one word per this many characters, so a query without spaces is bounded too. 64 keeps a
# sha256 in hex one word.
WORD_CHARS = 64
_WORD = re.compile(rf"\S{{1,{WORD_CHARS}}}")
_SEARCHABLE = re.compile(r"\w")  # a letter or digit in any script: what BM25, static and dense can match


def check_query_text(query: object, what: str = "query") -> str:
    """`query` if it can be searched, else a one-line ValueError: not a string, empty, or no word
    (letter or digit) at all, e.g. only emoji or punctuation, which no tier can match."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"{what} is empty")
    if not _SEARCHABLE.search(query):
        shown = query.strip() if len(query.strip()) <= 40 else query.strip()[:40] + "..."
        raise ValueError(f"{what} {shown!r} has no searchable words (no letters or digits)")
    return query


def bound_query(query: str, max_words: int = MAX_QUERY_WORDS) -> tuple[str, Truncation | None]:
    """(the first `max_words` words of `query`, a Truncation when words were cut, else None)."""
    if max_words <= 0:
        raise ValueError(f"max_words must be > 0, got {max_words}")
    end, n = 0, 0
    for m in _WORD.finditer(query):
        n += 1
        if n <= max_words:
            end = m.end()
    if n <= max_words:
        return query, None
    return query[:end], Truncation("query", n, max_words, unit="words")
