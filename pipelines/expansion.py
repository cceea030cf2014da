"""Semantic query expansion for BM25: the words of the question, plus the vocabulary words the dense
model places near each of its words and word pairs.

Why: BM25 finds nothing when the question paraphrases the passage ("the cabbie" / "the taxi driver",
"the recently adopted dog" / "the new puppy"), and MiniLM over whole 64-token chunks is diluted by
the rest of the chunk (exhaustive MiniLM found 36% of non-literal needles at 128K). Expansion moves
the semantic match into the inverted index, so it costs one small MiniLM pass per query and scales
with the index like BM25 does.

How:
- a vocabulary of plain English words (the dense model's own WordPiece whole words: alphabetic,
  >= 3 letters, not stop words; ~21k for MiniLM) is embedded once per dense model, one word at a
  time, and cached under $RETRO_CACHE/expansion/<model sha256>/ (atomic writes, reused by every
  index and process);
- the index's own plain words (`Index.corpus_words`, most frequent first) join it: WordPiece splits
  many words a corpus has ("tortoise", "dinghy", "zookeeper"), so they could never be reached;
  embedded once per index and cached there too;
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

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

from index.bm25 import STOPWORDS, text_words
from index.embedders import cache_dir, dense_model_sha, npy_bytes
from pipelines.dense import tokenizer_lock
from util.runinfo import atomic_write_bytes, atomic_write_json

_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class Expansion:
    """One query's BM25 terms with weights, and what each expansion came from."""

    terms: dict[str, float]  # BM25 term -> weight (the query's own terms 1.0)
    added: dict[str, tuple[str, str, float]]  # expansion term -> (vocabulary word, query unit, cosine)
    groups: dict[str, str]  # BM25 term -> the query unit it stands for (own word or expanded unit)


def encode_words(model, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """float32 [n, D] L2-normalised vectors of `texts`, one `model.encode` per batch, each holding the
    model's tokenizer lock (pipelines.dense.tokenizer_lock): a server embeds a new snapshot's words
    while other threads search with the same model, and one batch of words holds it for ~50 ms."""
    out = []
    for s in range(0, len(texts), batch_size):
        with tokenizer_lock(model.tokenizer):
            out.append(
                model.encode(
                    texts[s : s + batch_size],
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            )
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def vocabulary_words(tokenizer) -> list[str]:
    """Plain words of a WordPiece vocabulary: alphabetic, >= 3 letters, not stop words, sorted."""
    vocab = getattr(tokenizer, "vocab", None) or tokenizer.get_vocab()
    return sorted({w for w in vocab if w.isalpha() and w.islower() and len(w) >= 3 and w not in STOPWORDS})


def load_vocabulary(
    model, model_id: str = "all-MiniLM-L6-v2", batch_size: int = 256
) -> tuple[list[str], np.ndarray]:
    """(words [V], vectors float16 [V, D] L2-normalised) for `model`, from the cache or embedded now.

    The cache key is the model's sha256 (index.embedders.dense_model_sha), so two ids of one model
    share it. Embedding MiniLM's ~21k words takes ~1-2 min on 2 cores, once per machine.
    """
    folder = cache_dir() / "expansion" / dense_model_sha(model_id)[:16]
    words_path, vec_path = folder / "words.json", folder / "vectors.npy"
    if words_path.exists() and vec_path.exists():
        words = json.loads(words_path.read_text())
        vecs = np.load(vec_path, mmap_mode="r")
        if len(words) == len(vecs):
            return words, vecs
    words = vocabulary_words(model.tokenizer)
    if not words:
        raise ValueError(f"dense model {model_id!r}: its tokenizer has no plain words to expand into")
    vecs = np.asarray(encode_words(model, words, batch_size), np.float16)
    atomic_write_bytes(vec_path, npy_bytes(vecs))
    atomic_write_json(words_path, words)  # last: marks the table complete
    return words, vecs


def load_extra_words(
    model, words: list[str], model_id: str = "all-MiniLM-L6-v2", batch_size: int = 256
) -> np.ndarray:
    """vectors float16 [n, D] L2-normalised for `words` (a corpus's own words), from the cache or
    embedded now; cached under the model's folder by the sha256 of the word list."""
    key = hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
    path = cache_dir() / "expansion" / dense_model_sha(model_id)[:16] / f"corpus-{key}.npy"
    if path.exists():
        vecs = np.load(path, mmap_mode="r")
        if len(vecs) == len(words):
            return vecs
    vecs = np.asarray(encode_words(model, words, batch_size), np.float16).reshape(len(words), -1)
    atomic_write_bytes(path, npy_bytes(vecs))
    return vecs


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
    ):
        """`model`: a sentence-transformers model (MiniLM by default in the cascade); `top` nearest
        words per unit with cosine >= `min_sim`; expansion weight = `weight` * cosine. `corpus_words`
        (the index's own words, `Index.corpus_words`) join the vocabulary: a dense model's WordPiece
        vocabulary lacks many plain words ("tortoise", "dinghy", "zookeeper") that a corpus has."""
        if top <= 0:
            raise ValueError(f"expansion top must be > 0, got {top}")
        if not -1.0 <= min_sim <= 1.0:
            raise ValueError(f"expansion min_sim must be in [-1, 1], got {min_sim}")
        if weight <= 0:
            raise ValueError(f"expansion weight must be > 0, got {weight}")
        self.model, self.top, self.min_sim, self.weight, self.pairs = model, top, min_sim, weight, pairs
        words, vecs = load_vocabulary(model, model_id)
        self.stems = [text_words(w) for w in words]
        self.known_terms = {st for stems in self.stems for st in stems}  # BM25 terms of real words
        have = set(words)
        extra = [w for w in dict.fromkeys(corpus_words or []) if w not in have]
        if extra:
            vecs = np.concatenate([vecs, load_extra_words(model, extra, model_id)])
            words = words + extra
            self.stems += [text_words(w) for w in extra]
        self.words = words
        self.vectors = np.asarray(vecs, np.float32)  # [V, D]

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
        u_vecs = encode_words(self.model, units, batch_size=32)  # [u, D], as model.encode's default
        sims = u_vecs @ self.vectors.T  # [u, V]
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
