"""The BM25 tier: word terms (stemmed unigrams + bigrams) per chunk, indexed by bm25s, merged across shards.

A chunk's BM25 document is its neighbour text, the chunk plus its continuation in the same document
(what RETRO and the reader are handed for a hit), with the chunk's own words counted twice. So a
sentence cut by a chunk boundary still matches as a whole the chunk it starts in (whose neighbour
holds all of it), while a text inside one chunk ranks that chunk above the one before it. (The
static tier keys on the chunk alone, as the paper does.) Query bigrams weigh `bigram_weight` (0.5)
against a word's 1. Measured in BENCHMARKS.md (index section).

Terms come from the exact text: lower-cased `\\w+` words, English stop words dropped, Snowball
stems (PyStemmer), plus each pair of neighbouring kept words as a bigram ("magic number", "lemon
parrot"). Bigrams make a multi-word key such as "lemon-parrot" outrank chunks that merely hold
"lemon" and "parrot" apart, which is what a haystack full of look-alike needles needs; digits stay
whole words, so a number is one term, not a bag of digits. Hyphenated compounds are also terms of
their own (`compounds`, on in new indexes): at 100M tokens a filler sentence that happens to say
"the lemon parrot" matches the bigram too, and only "lemon-parrot" whole, a term a handful of chunks
hold, tells the key apart (BENCHMARKS.md, "Evals").

On disk, per shard (`bm25/`): `term_hash.npy` (uint64, sorted: an 8-byte blake2b of each term) and
the postings, one column per term, in one of two layouts. `packed` (new indexes, index/postings.py):
one uint32 per posting, row and score code, 4 bytes instead of 8, scores bit-identical; columns in
hash order. `csc` (indexes built before it, or `bm25_postings=csc`): the bm25s index as bm25s saves
it (float32 data, int32 indices, int64 indptr) plus `term_col.npy` (the column of each hash). A
shard's layout is told by its files, so an old index opens as it is. A query hashes its terms and
looks them up per shard.

bm25s bakes each shard's own idf into its scores; `ShardBM25.scores` rescales every query term's
postings by global idf / shard idf, with the global document frequency summed over the shards at
query time, so per-shard scores merge exactly (up to each shard's average chunk length).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from index.postings import PackedPostings, is_packed, lucene_idf32, write_packed

# A short list of function words that carry no topic (our own list).
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split()
)
_WORD = re.compile(r"\w+")
_COMPOUND = re.compile(r"\b\w+(?:-\w+)+")  # words joined by hyphens: "lemon-parrot", "x86-64"
_PLAIN_WORD = re.compile(r"\b[a-z]{3,24}\b")  # lower-cased alphabetic words a dense model can embed
WORDS_FILE = "words.json"  # {word: count} of a shard's plain words


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def text_words(text: str) -> list[str]:
    """Stemmed non-stop words of a text, in order."""
    return _stemmer().stemWords([w for w in _WORD.findall(text.lower()) if w not in STOPWORDS])


def with_bigrams(words: list[str], bigrams: bool = True) -> list[str]:
    """`words` plus each pair of neighbouring words joined by a space (when `bigrams`)."""
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)] if bigrams else list(words)


def compound_terms(text: str) -> list[str]:
    """Hyphenated compounds of a text as single terms, each part stemmed ("lemon-parrot", "x86-64",
    "read-onli"), in order. Stop words are kept inside a compound: it is matched whole."""
    if "-" not in text:
        return []
    return ["-".join(_stemmer().stemWords(c.split("-"))) for c in _COMPOUND.findall(text.lower())]


def text_terms(text: str, bigrams: bool = True, compounds: bool = False) -> list[str]:
    """The BM25 terms of a text: stemmed non-stop words, then bigrams of neighbouring kept words,
    then (when `compounds`) its hyphenated compounds whole."""
    terms = with_bigrams(text_words(text), bigrams)
    return terms + compound_terms(text) if compounds else terms


def term_hashes(terms: list[str]) -> np.ndarray:
    """uint64 [n]: a stable 8-byte hash of each term (the same in every process and on every machine)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") for t in terms],
        dtype=np.uint64,
    )


def write_bm25(
    folder: Path,
    texts: list[str],
    next_chunk: np.ndarray,
    *,
    k1: float,
    b: float,
    bigrams: bool = True,
    compounds: bool = False,
    postings: str = "csc",
) -> int:
    """Index chunk `texts` with bm25s into `folder`, each chunk scored by its neighbour text.

    next_chunk: int [C], i + 1 where chunk i's continuation in the same document is the next row, else -1.
    postings: "packed" (index/postings.py; the old layout when a shard cannot be packed exactly) or "csc".
    Returns the number of distinct terms.
    """
    import bm25s

    vocab: dict[str, int] = {}
    corpus = []
    surface: Counter[str] = Counter()  # plain words as written, for semantic query expansion
    for i, text in enumerate(texts):
        surface.update(w for w in _PLAIN_WORD.findall(text.lower()) if w not in STOPWORDS)
        # the neighbour's words come from the joined text, so a word cut by the chunk boundary
        # ("magic nu|mbers") is one word; the chunk's own words count once more, so the chunk that
        # holds a text outranks the one before it, whose continuation holds it
        neighbour = text + texts[i + 1] if int(next_chunk[i]) == i + 1 else text
        terms = with_bigrams(text_words(neighbour), bigrams) + text_words(text)
        if compounds:  # a hyphenated key whole, twice for the chunk that holds it, like its words
            terms += compound_terms(neighbour) + compound_terms(text)
        corpus.append([vocab.setdefault(t, len(vocab)) for t in terms])
    if not vocab:  # no chunk has a word: keep one term so the files exist and every score is 0
        vocab[""] = 0
    model = bm25s.BM25(k1=k1, b=b, method="lucene")
    model.index((corpus, {i: i for i in range(len(vocab))}), show_progress=False)
    hashes = term_hashes(list(vocab))
    sc = model.scores
    doc_len = np.array([len(d) for d in corpus], np.int64)
    if not (
        postings == "packed"
        and write_packed(folder, sc["data"], sc["indices"], sc["indptr"], doc_len, hashes, k1=k1, b=b)
    ):
        model.save(str(folder))
        order = np.argsort(hashes, kind="stable")
        np.save(folder / "term_hash.npy", hashes[order])
        np.save(folder / "term_col.npy", order.astype(np.int64))
    (folder / WORDS_FILE).write_text(json.dumps(dict(surface.most_common())))
    return len(vocab)


def read_words(folder: Path) -> dict[str, int]:
    """A shard's plain words with their counts (`WORDS_FILE`), most frequent first; {} for a shard
    built before the file existed."""
    path = Path(folder) / WORDS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class ShardBM25:
    """One shard's BM25 arrays, memory-mapped, and the scoring of query terms against them."""

    def __init__(self, folder: Path, num_chunks: int) -> None:
        self.num_chunks = num_chunks
        load = functools.partial(np.load, mmap_mode="r")
        self.hashes = load(folder / "term_hash.npy")
        self.packed: PackedPostings | None = None
        if is_packed(folder):  # columns in hash order: a term's column is its hash's position
            self.packed = PackedPostings(folder, num_chunks)
            self.indptr, self.cols = self.packed.indptr, None
        else:
            self.data = load(folder / "data.csc.index.npy")
            self.indices = load(folder / "indices.csc.index.npy")
            self.indptr = load(folder / "indptr.csc.index.npy")
            self.cols = load(folder / "term_col.npy")

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """int64 [n]: the column of each hashed term in this shard, -1 when absent."""
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, len(self.hashes) - 1)
        found = self.hashes[pos] == hashes
        return np.where(found, pos if self.cols is None else self.cols[pos], -1).astype(np.int64)

    def postings(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows int64, float32 bm25s scores with this shard's idf) of one column, in either layout."""
        if self.packed is not None:
            rows, scores = self.packed.column(
                col, float(lucene_idf32(self.df(np.array([col])), self.num_chunks)[0])
            )
            return rows.astype(np.int64), scores
        a, z = int(self.indptr[col]), int(self.indptr[col + 1])
        return np.asarray(self.indices[a:z], np.int64), np.asarray(self.data[a:z])

    def df(self, cols: np.ndarray) -> np.ndarray:
        """int64 [n]: in how many chunks each column's term occurs (0 for -1)."""
        safe = np.maximum(cols, 0)
        return np.where(cols >= 0, self.indptr[safe + 1] - self.indptr[safe], 0).astype(np.int64)

    def scores(self, cols: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """float32 [C]: sum over the present terms of weight * bm25s score (weight rescales the idf).

        groups: int [n] or None. Terms of one group count once per chunk, by their best weighted
        score (a synonym set: the chunk that says "shed" or "cabin" for "hut" scores as one match).
        """
        rows, vals, grp = [], [], []
        idf32 = lucene_idf32(self.df(cols), self.num_chunks) if self.packed is not None else None
        for j, (c, w) in enumerate(zip(cols, weights, strict=True)):
            if c >= 0:
                if idf32 is not None:
                    r, v = self.packed.column(int(c), float(idf32[j]))
                else:
                    a, z = int(self.indptr[c]), int(self.indptr[c + 1])
                    r, v = self.indices[a:z], self.data[a:z]
                rows.append(r)
                vals.append(v * w)
                grp.append(np.full(len(r), -1 if groups is None else groups[j], np.int64))
        if not rows:
            return np.zeros(self.num_chunks, np.float32)
        row, val, g = np.concatenate(rows), np.concatenate(vals), np.concatenate(grp)
        if groups is not None and row.size:  # best term per (chunk, group), then sum over groups
            order = np.lexsort((-val, row, g))  # by group, chunk, best score first
            row, val, g = row[order], val[order], g[order]
            first = np.r_[True, (row[1:] != row[:-1]) | (g[1:] != g[:-1])]
            row, val = row[first], val[first]
        return np.bincount(row, weights=val, minlength=self.num_chunks).astype(np.float32)


def lucene_idf(df: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """The idf bm25s's "lucene" method bakes into its scores."""
    return np.log1p((n - df + 0.5) / (df + 0.5))


def query_term_weights(
    text: str, bigrams: bool, bigram_weight: float, compounds: bool = False
) -> dict[str, float]:
    """A query's BM25 terms with their weights: words and hyphenated compounds 1, bigrams `bigram_weight`."""
    return {t: bigram_weight if " " in t else 1.0 for t in text_terms(text, bigrams, compounds)}


def _global_idf(shards: list[ShardBM25], terms: list[str]) -> tuple[list, list, np.ndarray]:
    """Per shard the terms' columns and document frequencies, and each term's idf over all shards."""
    hashes = term_hashes(terms)
    cols = [sh.lookup(hashes) for sh in shards]
    dfs = [sh.df(c) for sh, c in zip(shards, cols, strict=True)]
    return cols, dfs, lucene_idf(np.sum(dfs, axis=0), sum(sh.num_chunks for sh in shards))


def search_weighted(
    shards: list[ShardBM25], term_weights: dict[str, float], k: int, groups: dict[str, str] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per shard (local chunk ids, scores) of its top-k: sum over terms of weight * BM25, scored with
    global idf (each shard's postings rescaled by global idf / shard idf). `groups` maps terms to a
    group name: a group's terms count once per chunk, by the best (terms not in it: a group each)."""
    if not term_weights:
        return []
    terms = sorted(term_weights)
    term_weight = np.array([float(term_weights[t]) for t in terms])
    group_ids = None
    if groups is not None:
        names: dict[str, int] = {}
        group_ids = np.array([names.setdefault(groups.get(t, "\0" + t), len(names)) for t in terms], np.int64)
    cols, dfs, idf_all = _global_idf(shards, terms)
    out = []
    for sh, c, df in zip(shards, cols, dfs, strict=True):
        weights = term_weight * np.where(df > 0, idf_all / lucene_idf(np.maximum(df, 1), sh.num_chunks), 0.0)
        scores = sh.scores(c, weights, group_ids)
        kk = min(k, len(scores))
        top = np.argpartition(-scores, kk - 1)[:kk]
        top = top[scores[top] > 0]
        out.append((top, scores[top]))
    return out


def idf_mass(shards: list[ShardBM25], term_weights: dict[str, float], known: set[str] | None = None) -> float:
    """sum of weight * global idf over the terms (absent words at df = 0, absent bigrams and compounds
    0): about the BM25 score of a chunk holding each term once, so score / idf_mass says how much of
    the query a chunk covers. `known`: when given, an absent term outside it (a typo, a code) counts 0 too."""
    if not term_weights:
        return 0.0
    terms = sorted(term_weights)
    _, dfs, idf = _global_idf(shards, terms)  # absent words get the rarest word's idf
    absent = np.sum(dfs, axis=0) == 0
    joined = np.array([" " in t or "-" in t or (known is not None and t not in known) for t in terms])
    idf[absent & joined] = 0.0  # an absent bigram or compound is a new pairing, not a rare word
    return float(np.dot([float(term_weights[t]) for t in terms], idf))
