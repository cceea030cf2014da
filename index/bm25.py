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
the postings, one column per term, in one of three layouts. `once` (new indexes,
index/postings_once.py): one uint32 entry holds two neighbour documents that share a chunk (the
term frequency of document j and of j - 1), so each chunk's terms are posted about once; scores
bit-identical; 0.52x the bytes of `packed` (BENCHMARKS.md). `packed` (index/postings.py): one
uint32 per neighbour-document posting, row and score code, 4 bytes instead of 8, scores
bit-identical; columns in hash order in both. `csc` (indexes built before them, or
`bm25_postings=csc`): the bm25s index as bm25s saves it (float32 data, int32 indices, int64 indptr)
plus `term_col.npy` (the column of each hash). A shard's layout is told by its files
(postings.json's "layout"), so an old index opens as it is. A query hashes its terms and looks
them up per shard.

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

from index.postings import PackedPostings, lucene_idf32, write_packed
from index.postings_once import LAYOUT as ONCE_LAYOUT
from index.postings_once import OncePostings, layout_of, write_once

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
    postings: "once" (index/postings_once.py), "packed" (index/postings.py) or "csc"; a shard that
    a layout cannot give back exactly falls back to the next (once -> packed -> csc)
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
    csc = (sc["data"], sc["indices"], sc["indptr"], doc_len, hashes)
    if postings == "once":  # the packed layout when a shard cannot be written exactly
        postings = "done" if write_once(folder, *csc, next_chunk, k1=k1, b=b) else "packed"
    if not (postings == "done" or (postings == "packed" and write_packed(folder, *csc, k1=k1, b=b))):
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

        def load(path: Path) -> np.ndarray:
            # memory-mapped, seen as a plain ndarray: slicing an np.memmap costs ~3x more per term
            # (650 terms of a 166k-chunk shard: 228 -> 74 ms, BENCHMARKS.md "The expanded list at scale")
            return np.load(path, mmap_mode="r").view(np.ndarray)

        self.hashes = load(folder / "term_hash.npy")
        self.packed: PackedPostings | OncePostings | None = None
        self.once: OncePostings | None = None
        layout = layout_of(folder)
        if layout == ONCE_LAYOUT:  # columns in hash order, document frequencies stored
            self.packed = self.once = OncePostings(folder, num_chunks)
            self.indptr, self.cols = self.once.indptr, None
        elif layout is not None:  # packed (an unknown layout raises): columns in hash order
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
        """(chunk rows, ascending, int [n]; float32 bm25s scores with this shard's idf [n]) of one
        column, in either layout (views, not copies, where the layout allows)."""
        if self.packed is not None:
            return self.packed.column(col, float(lucene_idf32(self.df(np.array([col])), self.num_chunks)[0]))
        a, z = int(self.indptr[col]), int(self.indptr[col + 1])
        return self.indices[a:z], self.data[a:z]

    def pieces(self, col: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`postings` as disjoint (rows, scores) pieces that together hold each row once: what a sum
        over all chunks needs, without joining and sorting the once layout's two."""
        if self.once is not None:
            return self.once.pieces(col, float(lucene_idf32(self.df(np.array([col])), self.num_chunks)[0]))
        return [self.postings(col)]

    def df(self, cols: np.ndarray) -> np.ndarray:
        """int64 [n]: in how many chunks each column's term occurs (0 for -1)."""
        safe = np.maximum(cols, 0)
        if self.once is not None:
            return np.where(cols >= 0, self.once.df[safe], 0).astype(np.int64)
        return np.where(cols >= 0, self.indptr[safe + 1] - self.indptr[safe], 0).astype(np.int64)

    def scores(self, cols: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """float32 [C]: sum over the present terms of weight * bm25s score (weight rescales the idf).

        groups: int [n] or None. Terms of one group count once per chunk, by their best weighted
        score (a synonym set: the chunk that says "shed" or "cabin" for "hut" scores as one match).
        Each term's postings are added into a dense [C] array (a column holds a row once, so fancy
        indexing adds without collisions); a group keeps its best per chunk in a [C] array of its
        own. The sums run in term (group) order, float64, like the bincount this replaced, so the
        scores are the same bits; it skips that version's sort of all postings (BENCHMARKS.md,
        "The expanded list at scale").
        """
        out = np.zeros(self.num_chunks, np.float64)
        present = [j for j, c in enumerate(cols) if c >= 0]
        if groups is None:
            for j in present:
                for rows, vals in self.pieces(int(cols[j])):
                    out[rows] += vals * weights[j]
            return out.astype(np.float32)
        by_group: dict[int, list[int]] = {}
        for j in present:
            by_group.setdefault(int(groups[j]), []).append(j)
        best = None  # one scratch [C] for every group, zeroed again only where a group wrote
        for g in sorted(by_group):
            members = by_group[g]
            if len(members) == 1:
                for rows, vals in self.pieces(int(cols[members[0]])):
                    out[rows] += vals * weights[members[0]]
                continue
            if best is None:
                best = np.zeros(self.num_chunks, np.float64)
            touched = []
            if self.once is not None:  # the group's columns decoded together (expanded lists: ~50 a group)
                member_cols = cols[members]
                idf32 = lucene_idf32(self.df(member_cols), self.num_chunks)
                for rows, vals in self.once.weighted(member_cols, idf32, weights[members]):
                    np.maximum.at(best, rows, vals)
                    touched.append(rows)
            else:
                for j in members:
                    for rows, vals in self.pieces(int(cols[j])):
                        best[rows] = np.maximum(best[rows], vals * weights[j])
                        touched.append(rows)
            if touched:
                # a row repeated in `rows` is added once (fancy `+=` reads, adds and writes back),
                # the same sum as adding the whole [C] array, where untouched rows add 0.0; at 1B
                # tokens the whole array (262k chunks a shard, ~12 groups, 65 shards) cost more
                rows = np.concatenate(touched)
                out[rows] += best[rows]
                best[rows] = 0.0
        return out.astype(np.float32)

    def scores_at(
        self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, groups: np.ndarray | None = None
    ) -> np.ndarray:
        """float32 [m]: what `scores` gives at the local chunk `rows` (int, ascending, unique) only,
        found by binary search in each posting (reads ~m log n of a posting of n, not all of it)."""
        m = len(rows)
        out = np.zeros(m, np.float64)
        gids = np.arange(len(cols)) if groups is None else np.asarray(groups)
        best: dict[int, np.ndarray] = {}
        for j, c in enumerate(cols):
            if c < 0 or m == 0:
                continue
            post, vals = self.postings(int(c))
            if len(post) == 0:
                continue
            pos = np.minimum(np.searchsorted(post, rows), len(post) - 1)
            hit = post[pos] == rows
            val = np.where(hit, vals[pos] * weights[j], 0.0)
            g = int(gids[j])
            best[g] = val if g not in best else np.maximum(best[g], val)
        for g in sorted(best):
            out += best[g]
        return out.astype(np.float32)


def lucene_idf(df: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """The idf bm25s's "lucene" method bakes into its scores."""
    return np.log1p((n - df + 0.5) / (df + 0.5))


def query_term_weights(
    text: str, bigrams: bool, bigram_weight: float, compounds: bool = False
) -> dict[str, float]:
    """A query's BM25 terms with their weights: words and hyphenated compounds 1, bigrams `bigram_weight`."""
    return {t: bigram_weight if " " in t else 1.0 for t in text_terms(text, bigrams, compounds)}


def shard_dfs(shards: list[ShardBM25], hashes: np.ndarray) -> np.ndarray:
    """int64 [n]: in how many chunks of `shards` each hashed term occurs, summed (the first half of a
    query with global idf; a Ray actor runs it over the shards it holds, pipelines/ray_search.py)."""
    return np.sum([sh.df(sh.lookup(hashes)) for sh in shards], axis=0, dtype=np.int64)


def global_idf(df: np.ndarray, num_chunks: int) -> np.ndarray:
    """float64 [n]: each term's idf over the whole index, from its document frequency over all shards."""
    return lucene_idf(df, num_chunks)


def weighted_query(
    term_weights: dict[str, float], groups: dict[str, str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(terms sorted, float64 weight of each, int64 group of each or None): the form every shard
    scores (`shard_top`). `groups` maps terms to a group name; terms not in it are a group each."""
    terms = sorted(term_weights)
    term_weight = np.array([float(term_weights[t]) for t in terms])
    group_ids = None
    if groups is not None:
        names: dict[str, int] = {}
        group_ids = np.array([names.setdefault(groups.get(t, "\0" + t), len(names)) for t in terms], np.int64)
    return terms, term_weight, group_ids


def shard_top(
    sh: ShardBM25,
    cols: np.ndarray,
    term_weight: np.ndarray,
    idf_all: np.ndarray,
    group_ids: np.ndarray | None,
    k: int,
    is_late: np.ndarray | None = None,
    pool: int = 0,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One shard's top-k (local chunk ids, scores): sum over terms of weight * BM25 with global idf
    (the shard's postings rescaled by global idf / shard idf). `cols`: the terms' columns here.

    `is_late` terms (bool per term; long postings) are not scored over every chunk: the other terms
    are, then the shard's top `pool` chunks by them plus its `candidates` (local rows, e.g. other
    lists' hits) get their score over all terms, read from the late postings by binary search. A
    chunk outside that set keeps the score of its early terms (a lower bound). None: exhaustive."""
    df = sh.df(cols)
    weights = term_weight * np.where(df > 0, idf_all / lucene_idf(np.maximum(df, 1), sh.num_chunks), 0.0)
    late = is_late is not None and bool(np.any(is_late))
    scores = sh.scores(np.where(is_late, -1, cols) if late else cols, weights, group_ids)
    if late:
        rows = np.zeros(0, np.int64)
        if pool > 0:
            pp = min(pool, len(scores))
            rows = np.argpartition(-scores, pp - 1)[:pp]
            rows = rows[scores[rows] > 0]
        if candidates is not None and len(candidates):
            rows = np.concatenate([rows, np.asarray(candidates, np.int64)])
        rows = np.unique(rows)
        scores[rows] = sh.scores_at(rows, cols, weights, group_ids)
    kk = min(k, len(scores))
    top = np.argpartition(-scores, kk - 1)[:kk]
    top = top[scores[top] > 0]
    return top, scores[top]


def idf_mass_of(
    terms: list[str], weights: np.ndarray, df: np.ndarray, num_chunks: int, known: set[str] | None
) -> float:
    """`idf_mass` from the document frequencies of `terms` (sorted, as `weighted_query`) over all shards."""
    idf = global_idf(df, num_chunks)  # absent words get the rarest word's idf
    absent = df == 0
    joined = np.array([" " in t or "-" in t or (known is not None and t not in known) for t in terms])
    idf[absent & joined] = 0.0  # an absent bigram or compound is a new pairing, not a rare word
    return float(np.dot(weights, idf))


def idf_mass(shards: list[ShardBM25], term_weights: dict[str, float], known: set[str] | None = None) -> float:
    """sum of weight * global idf over the terms (absent words at df = 0, absent bigrams and compounds
    0): about the BM25 score of a chunk holding each term once, so score / idf_mass says how much of
    the query a chunk covers. `known`: when given, an absent term outside it (a typo, a code) counts 0 too."""
    if not term_weights:
        return 0.0
    terms, weights, _ = weighted_query(term_weights)
    df = shard_dfs(shards, term_hashes(terms))
    return idf_mass_of(terms, weights, df, sum(sh.num_chunks for sh in shards), known)
