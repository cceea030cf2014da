"""Collapse near-identical neighbours into one row, so copies of one page do not crowd the results.

Why: a real corpus holds the same text under several names. On a man-page index grep, egrep and fgrep
are one page (so are gzip and gunzip), and their identical chunks took 6 of 10 results, each telling
the reader nothing the first had not. The cascade therefore ranks more candidates than it returns
(the expensive stage scores all N2), and this step walks that ranking best first: a candidate whose
text is a near-duplicate of one already kept is folded into it (the kept row lists it in
`duplicates`), and the next distinct candidate takes the freed slot, so k distinct rows come back
whenever N2 holds them. `CascadeConfig.collapse_duplicates=false` turns it off.

What counts as the same text, kept simple on purpose:
- both texts are normalised to their lower-case words (`\\w+`), so whitespace, case and punctuation
  (man-page rendering, line wrapping) do not matter;
- identical word sequences are duplicates;
- otherwise two texts are near-duplicates when the Jaccard overlap of their word `SHINGLE_WORDS`-grams
  is at least `NEAR_DUPLICATE_JACCARD`. On a ~90-word neighbour (chunk + continuation) one changed
  word (a page's own name, say) costs about 3 shingles on each side, Jaccard ~0.93; a shift of ten
  words at the chunk boundary still gives ~0.8. Two neighbours that share a chunk but continue
  differently score ~0.5 and stay apart: the reader sees different text in them.
The neighbour text (chunk + continuation, what the reader reads) is compared, not the bare chunk.

Legend: n candidates.
"""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np

from pipelines.results import StageResult

NEAR_DUPLICATE_JACCARD = 0.8  # word-shingle Jaccard at or above which two neighbour texts are one text
SHINGLE_WORDS = 3  # words per shingle (3-grams: one changed word touches at most 3 shingles)

_WORD = re.compile(r"\w+")


def words_of(text: str) -> tuple[str, ...]:
    """The text's lower-case words: whitespace, case and punctuation differences vanish."""
    return tuple(_WORD.findall(text.lower()))


def shingles(words: tuple[str, ...], n: int = SHINGLE_WORDS) -> frozenset[tuple[str, ...]]:
    """The set of n consecutive words (a text shorter than n words is its one shingle)."""
    if len(words) <= n:
        return frozenset([words])
    return frozenset(words[i : i + n] for i in range(len(words) - n + 1))


class TextKey:
    """One text, normalised once: its words and shingles, compared with `same_text`."""

    __slots__ = ("shingles", "words")

    def __init__(self, text: str):
        self.words = words_of(text)
        self.shingles = shingles(self.words)

    def same_text(self, other: TextKey, threshold: float = NEAR_DUPLICATE_JACCARD) -> bool:
        """Identical words, or shingle Jaccard >= threshold (texts without words: only if both are)."""
        if self.words == other.words:
            return True
        if not self.words or not other.words:
            return False
        inter = len(self.shingles & other.shingles)
        return inter / (len(self.shingles) + len(other.shingles) - inter) >= threshold


def collapse(
    ids: list[int], texts: list[str], k: int, threshold: float = NEAR_DUPLICATE_JACCARD
) -> tuple[list[int], dict[int, tuple[int, ...]]]:
    """Walk `ids` (best first) and keep the first k distinct texts.

    Returns (positions in `ids` of the kept candidates, best first; kept id -> ids folded into it,
    best first). Candidates after the k-th kept one are still folded into a kept row when they copy
    it, so a row lists every copy the stage ranked; a later candidate that matches no kept row is left
    out, as the plain cut to k would.
    """
    keys: list[TextKey] = []  # of the kept candidates, in kept order
    kept: list[int] = []
    folded: dict[int, list[int]] = {}
    for pos, (cid, text) in enumerate(zip(ids, texts, strict=True)):
        key = TextKey(text)
        into = next((j for j, other in enumerate(keys) if key.same_text(other, threshold)), None)
        if into is not None:
            folded.setdefault(ids[kept[into]], []).append(cid)
        elif len(kept) < k:
            kept.append(pos)
            keys.append(key)
    return kept, {cid: tuple(dups) for cid, dups in folded.items()}


def collapse_stage(index, ranked: StageResult, k: int) -> StageResult:
    """The final stage's full ranking (`ranked`, n >= k candidates) cut to k distinct neighbours.

    Reads the candidates' neighbour texts from `index` (`neighbour_text`); the returned result keeps
    the stage's name, mode and scores, holds k ids (fewer when the ranking has fewer distinct texts),
    maps each kept id to its copies in `duplicates`, and counts this step's time in `time_ms`.
    """
    t0 = time.perf_counter()
    ids = np.asarray(ranked.ids, np.int64)
    if ids.size == 0:
        return ranked
    kept, folded = collapse(ids.tolist(), index.neighbour_text(ids), k)
    keep = np.asarray(kept, np.int64)
    return dataclasses.replace(
        ranked,
        ids=ids[keep],
        scores=np.asarray(ranked.scores, np.float32)[keep],
        time_ms=ranked.time_ms + (time.perf_counter() - t0) * 1e3,
        duplicates=folded,
    )
