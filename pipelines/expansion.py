"""Semantic query expansion for BM25: the words of the question, plus the vocabulary words the dense
model places near each of its words and word pairs.

Why: BM25 finds nothing when the question paraphrases the passage ("the cabbie" / "the taxi driver",
"the recently adopted dog" / "the new puppy"), and MiniLM over whole 64-token chunks is diluted by
the rest of the chunk (exhaustive MiniLM found 36% of non-literal needles at 128K). Expansion moves
the semantic match into the inverted index, so it costs one small MiniLM pass per query and scales
with the index like BM25 does.

How:
- a vocabulary of plain English words (the dense model's own WordPiece whole words: alphabetic,
  >= 3 letters, not stop words; ~21k for MiniLM) and the index's own plain words (most frequent
  first: WordPiece splits many words a corpus has, "tortoise", "dinghy", "zookeeper", so they could
  never be reached) are embedded one word at a time by the build, into the index's expansion table
  (index/expansion_table.py); a query only memory-maps it (an index built before the table embeds
  them on its first query, cached under $RETRO_CACHE);
- a query's units are its content words and adjacent content-word pairs ("rocky height");
  each unit takes its `top` nearest vocabulary words with cosine >= `min_sim`;
- an expansion term (the BM25 stem of the vocabulary word) gets weight `weight * cosine` (the best
  over units); the query's own terms keep weight 1. Unit weights sim, sim^2, sim^3 were measured on
  100 non-literal needles at 1M tokens (data flow in BENCHMARKS.md "Evals"): R@10 0.79 / 0.64 / 0.52;
- `Expansion.groups` maps each term to the unit it stands for, so a search can count a unit's
  synonyms once per chunk (the expanded list's R@10 on those needles: 0.83 summed, 0.90 grouped with
  top 100; top 50 grouped 0.83).

Expansion swamps literal questions when it replaces BM25 (100 literal needles at 1M: R@10 1.00 ->
0.31), so the cascade runs it as its own cheap-stage list beside plain BM25 (`pipelines.stages`).

Legend: V vocabulary words, D dense dim, u query units.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np

from index.bm25 import STOPWORDS, text_words
from index.expansion_table import ExpansionTable, cached_table
from pipelines.dense import tokenizer_lock

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Expansion:
    """One query's BM25 terms with weights, and what each expansion came from."""

    terms: dict[str, float]  # BM25 term -> weight (the query's own terms 1.0)
    added: dict[str, tuple[str, str, float]]  # expansion term -> (vocabulary word, query unit, cosine)
    groups: dict[str, str]  # BM25 term -> the query unit it stands for (own word or expanded unit)


class QueryExpander:
    """Expands a question into weighted BM25 terms through the dense model's word neighbourhoods."""

    def __init__(
        self,
        model,
        *,
        model_id: str = "all-MiniLM-L6-v2",
        top: int = 50,
        min_sim: float = 0.4,
        weight: float = 1.0,
        pairs: bool = True,
        corpus_words: list[str] | None = None,
        table: ExpansionTable | None = None,
        corpus_limit: int = 50_000,
        quiet: bool = True,
    ):
        """`model`: the dense model (MiniLM by default in the cascade), which encodes the query's
        units; `top` nearest words per unit with cosine >= `min_sim`; expansion weight = `weight` *
        cosine. The words and their vectors come from `table` (the index's, `Index.expansion_table`:
        the model's plain words, then the first `corpus_limit` of the corpus's own words, since a
        dense model's WordPiece vocabulary lacks many words a corpus has: "tortoise", "dinghy").
        Without a table (an index built before it), the model's words and `corpus_words` are embedded
        now, or read from $RETRO_CACHE (index.expansion_table.cached_table; bars unless `quiet`)."""
        if top <= 0:
            raise ValueError(f"expansion top must be > 0, got {top}")
        if not -1.0 <= min_sim <= 1.0:
            raise ValueError(f"expansion min_sim must be in [-1, 1], got {min_sim}")
        if weight <= 0:
            raise ValueError(f"expansion weight must be > 0, got {weight}")
        self.model, self.top, self.min_sim, self.weight, self.pairs = model, top, min_sim, weight, pairs
        numpy_model = hasattr(model, "hidden")  # index.minilm: its Rust tokenizer is only read, no lock
        self._tok_lock = contextlib.nullcontext() if numpy_model else tokenizer_lock(model.tokenizer)
        if table is None:
            table = cached_table(model, model_id, list(corpus_words or []), quiet=quiet)
            rows = np.arange(len(table.words))
        else:
            rows = table.rows(corpus_limit)
        self.words = [table.words[r] for r in rows.tolist()]
        self.stems = [table.stems[r] for r in rows.tolist()]
        # BM25 terms of real words: the model's vocabulary (a corpus word may be a typo)
        self.known_terms = {st for stems in table.stems[: table.vocabulary] for st in stems}
        self.vectors = np.asarray(table.vectors[rows], np.float32)  # [V, D]

    def units(self, query: str) -> list[str]:
        """The query's content words, then (with pairs) each adjacent pair of them."""
        words = [w for w in _WORD.findall(query.lower()) if w not in STOPWORDS and len(w) > 1]
        pairs = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)] if self.pairs else []
        return list(dict.fromkeys(words + pairs))

    def expand(self, query: str) -> Expansion:
        """The query's own BM25 terms (weight 1) plus weighted expansion terms (see the module doc)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query is empty")
        own = set(text_words(query))
        terms = dict.fromkeys(own, 1.0)
        added: dict[str, tuple[str, str, float]] = {}
        units = self.units(query)
        groups = {stem: unit for unit in units if " " not in unit for stem in text_words(unit) if stem in own}
        if not units:
            return Expansion(terms, added, groups)
        with self._tok_lock:  # sentence-transformers tokenizes inside encode (pipelines.dense.tokenizer_lock)
            u_vecs = self.model.encode(units, convert_to_numpy=True, normalize_embeddings=True)  # [u, D]
        sims = np.asarray(u_vecs, np.float32) @ self.vectors.T  # [u, V]
        top = min(self.top, sims.shape[1])
        best = np.argpartition(-sims, top - 1, axis=1)[:, :top]  # [u, top]
        for u, unit in enumerate(units):
            for j in best[u]:
                sim = float(sims[u, j])
                if sim < self.min_sim:
                    continue
                w = self.weight * sim
                for stem in self.stems[j]:
                    if stem not in own and terms.get(stem, 0.0) < w:
                        terms[stem] = w
                        added[stem] = (self.words[j], unit, round(sim, 4))
                        groups[stem] = unit
        return Expansion(terms, added, groups)


def best_sentence_match(texts: list[str], expansion: Expansion, idf: dict[str, float]) -> np.ndarray:
    """float32 [n]: per text, its best sentence's match with an expanded question: the sum over the
    question's units (`expansion.groups`) of the best weight * idf among the unit's terms the
    sentence holds. A paraphrased fact is one sentence; a chunk that matches the question's ideas
    only across several sentences (a distractor's predicate, a filler word for its subject) scores
    less than the sentence that matches them all."""
    from pipelines.dense import split_sentences

    out = np.zeros(len(texts), np.float32)
    for i, text in enumerate(texts):
        for sentence in split_sentences(text):
            best: dict[str, float] = {}
            for term in set(text_words(sentence)) & expansion.terms.keys():
                unit = expansion.groups.get(term, term)
                best[unit] = max(best.get(unit, 0.0), expansion.terms[term] * idf.get(term, 0.0))
            out[i] = max(out[i], sum(best.values()))
    return out
