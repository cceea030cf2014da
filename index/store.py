"""Open an index and read it: search per tier, chunk tokens and text, provenance, dense vectors.

Everything large is memory-mapped; FAISS and BM25 load per shard on first use. Queries fan out
over the shards and merge the per-shard top-k by score. Global chunk ids run over the shards in
manifest order (shard s holds ids [chunk_start[s], chunk_start[s+1])).

    idx = Index.open("IDX")
    ids, scores = idx.search_bm25("magic number for alpha", k=10)
    print(idx.neighbour_text(ids[:1])[0], idx.provenance(ids[:1])[0])
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np

from index.build import FORMAT_VERSION
from index.lists import BM25Query, Listed, StaticQuery, WeightedQuery, merge_topk, run_jobs
from index.shard import check_shard_files
from index.tokenizer import Tokenizer, sha256_file


class _Shard:
    """One shard's arrays (memory-mapped) and lazily loaded search structures."""

    def __init__(self, folder: Path, doc_base: int) -> None:
        self.folder = folder
        self.doc_base = doc_base
        self.tokens = np.load(folder / "tokens.npy", mmap_mode="r")
        self.chunk_doc = np.load(folder / "chunk_doc.npy", mmap_mode="r")
        self.chunk_span = np.load(folder / "chunk_span.npy", mmap_mode="r")
        self.dense = (
            np.load(folder / "dense.npy", mmap_mode="r") if (folder / "dense.npy").is_file() else None
        )

    @functools.cached_property
    def docs(self) -> list[dict]:
        with open(self.folder / "docs.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    @functools.cached_property
    def bm25(self):
        from index.bm25 import ShardBM25

        return ShardBM25(self.folder / "bm25", len(self.chunk_doc))

    @functools.cached_property
    def ann(self):
        import faiss

        return faiss.read_index(str(self.folder / "static.faiss"))


def _verify_shared(path: Path, manifest: dict) -> int:
    """Check the shared files that record their sha256 (FAISS template, pooled static table); return
    how many were checked. The tokenizer is checked on every open."""
    checked = 0
    template = path / "faiss.template"
    if "template_sha256" in manifest["faiss"]:
        if not template.is_file() or sha256_file(template) != manifest["faiss"]["template_sha256"]:
            raise ValueError(
                f"{template}: missing or sha256 differs from index.json (index {path} is damaged)"
            )
        checked += 1
    table = path / "static" / "table.npy"
    if manifest["static"].get("kind") == "pooled":
        if not table.is_file() or sha256_file(table) != manifest["static"]["sha256"]:
            raise ValueError(f"{table}: missing or sha256 differs from index.json (index {path} is damaged)")
        checked += 1
    if manifest.get("expansion"):
        from index.expansion_table import FILES, load_table

        load_table(path, manifest["expansion"], verify=True)
        checked += len(FILES)
    return checked


def _read_shard_json(meta_path: Path, index: Path) -> dict:
    """A listed shard's shard.json, or a ValueError naming it when it is not whole."""
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e}) (index {index} is damaged)") from None
    if not isinstance(meta, dict) or not {"chunks", "docs", "files"} <= set(meta):
        raise ValueError(f"{meta_path}: lacks chunks, docs or files (index {index} is damaged)")
    return meta


def _check_npy_size(npy: Path, index: Path) -> None:
    """A cheap check of a .npy file the manifest records only by sha256 (the static table): its
    size must be what its own header says. Truncation shows at open; same-size damage needs --verify."""
    from numpy.lib import format as npy_format

    try:
        with open(npy, "rb") as f:
            version = npy_format.read_magic(f)
            read_header = (
                npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            want = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except FileNotFoundError:
        raise ValueError(f"{npy}: missing (index {index} is damaged)") from None
    except ValueError as e:
        raise ValueError(
            f"{npy}: not a readable .npy file ({str(e).splitlines()[0]}) (index {index} is damaged)"
        ) from None
    if npy.stat().st_size != want:
        raise ValueError(
            f"{npy}: size {npy.stat().st_size} != {want} its header says (index {index} is damaged)"
        )


def _counts_on_disk(rel: tuple[str, ...], listed: set[str], table: str | None = None) -> bool:
    """Whether a file (path parts under the index folder) is part of the index as its manifest lists
    it: not a temporary name left by a killed write (".x.tmp"), not a shard of an unfinished append
    (complete or not, it is not in index.json), not build bookkeeping (build.json, build logs), not
    an expansion table other than the listed one (`table`, "expansion/NNNNNN")."""
    if any(part.startswith(".") for part in rel) or rel[0].startswith("build"):
        return False
    if rel[0] == "expansion" and "/".join(rel[:2]) != table:
        return False
    return not (rel[0] == "shards" and len(rel) > 1 and rel[1] not in listed)


# the manifest's top-level fields Index.open reads, with their JSON types
_MANIFEST_KEYS = {
    "tokenizer": dict,
    "shards": list,
    "counts": dict,
    "dense": dict,
    "faiss": dict,
    "static": dict,
    "chunk_len": int,
}


class Index:
    """A built index, opened read-only. Use `Index.open(path)`."""

    def __init__(self, path: Path, manifest: dict, tokenizer: Tokenizer, shards: list[_Shard]) -> None:
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self._shards = shards
        counts = [s["chunks"] for s in manifest["shards"]]
        self._chunk_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.chunk_len: int = manifest["chunk_len"]
        self.num_docs: int = manifest["counts"]["docs"]
        self.num_chunks: int = manifest["counts"]["chunks"]
        self.num_tokens: int = manifest["counts"]["tokens"]
        self.has_dense: bool = manifest["dense"]["enabled"]
        self.dense_model_id: str = manifest["dense"]["model"]
        self.nprobe: int = manifest["faiss"].get("nprobe", 32)
        # snapshot number: 0 for a fresh build, +1 per append that added shards (older manifests: 0)
        self.generation: int = int(manifest.get("generation", 0))
        self.verified: dict | None = None  # {"shards", "files"} checked by sha256 when opened with verify

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        dense_model: str | None = None,
        verify: bool = False,
    ) -> Index:
        """Open the index at `path`.

        tokenizer / dense_model: what the caller expects; a mismatch with what the index was built
        with is an error. verify: also check every file's sha256 (slow on big indexes).
        """
        path = Path(path)
        man_path = path / "index.json"
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such index folder")
        if not man_path.is_file():
            if (path / "build.json").is_file():
                raise ValueError(
                    f"{path}: unfinished build (build.json present); rerun the build command to resume it"
                )
            raise ValueError(f"{path}: not a retro index (no index.json)")
        try:
            manifest = json.loads(man_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{man_path}: not valid JSON ({e.msg})") from None
        if manifest.get("format") != "retro-index" or manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{man_path}: format {manifest.get('format')} v{manifest.get('format_version')}, "
                f"this code reads retro-index v{FORMAT_VERSION}"
            )
        missing = [key for key in _MANIFEST_KEYS if not isinstance(manifest.get(key), _MANIFEST_KEYS[key])]
        if missing:
            raise ValueError(
                f"{man_path}: missing or malformed field(s) {', '.join(missing)} (index {path} is damaged)"
            )
        tok_file = path / manifest["tokenizer"]["file"]
        if sha256_file(tok_file) != manifest["tokenizer"]["sha256"]:
            raise ValueError(f"{tok_file}: sha256 differs from index.json; the tokenizer file was replaced")
        if tokenizer is not None and sha256_file(tokenizer) != manifest["tokenizer"]["sha256"]:
            raise ValueError(f"{tokenizer}: not the tokenizer {path} was built with")
        if dense_model is not None:
            from index.embedders import dense_model_sha

            if dense_model_sha(dense_model) != manifest["dense"]["sha256"]:
                raise ValueError(
                    f"dense model {dense_model!r} is not the one {path} was built with "
                    f"({manifest['dense']['model']})"
                )
        shards, files_checked = [], 0
        for entry in manifest["shards"]:
            folder = path / "shards" / entry["name"]
            meta_path = folder / "shard.json"
            if not meta_path.is_file():
                raise ValueError(f"{folder}: shard listed in index.json is missing")
            meta = _read_shard_json(meta_path, path)
            if (meta["chunks"], meta["docs"]) != (entry["chunks"], entry["docs"]):
                raise ValueError(f"{folder}: shard.json counts differ from index.json")
            problem = check_shard_files(folder, meta, hashes=verify)
            if problem:
                raise ValueError(f"{problem} (index {path} is damaged)")
            files_checked += len(meta["files"])
            shards.append(_Shard(folder, entry["doc_start"]))
        if manifest["static"].get("kind") == "pooled":
            _check_npy_size(path / "static" / "table.npy", path)
        index = cls(path, manifest, Tokenizer(tok_file), shards)
        if verify:
            index.verified = {
                "shards": len(shards),
                "files": files_checked + 1 + _verify_shared(path, manifest),
            }
        return index

    # -- id helpers --------------------------------------------------------------------------------
    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_chunks):
            raise ValueError(f"chunk ids must be in [0, {self.num_chunks}), got {ids.min()}..{ids.max()}")
        return ids

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shard = np.searchsorted(self._chunk_start, ids, side="right") - 1
        return shard, ids - self._chunk_start[shard]

    def _check_k(self, k: int) -> int:
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k={k}: must be a positive integer")
        return min(int(k), self.num_chunks)

    # -- tiers ---------------------------------------------------------------------------------------
    @functools.cached_property
    def static(self):
        """The static embedder the index was built with."""
        from index.embedders import load_static

        return load_static(self.path / "static", self.tokenizer)

    def _query_tokens(self, query: str) -> list[int]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query is empty")
        return self.tokenizer.encode(query)

    def search_bm25(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """BM25 over every chunk: (ids int64 [k'], scores float32 [k']), best first."""
        return tuple(self.search_lists([BM25Query(query, k)])[0][:2])

    def search_bm25_tokens(self, tokens, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch BM25 by token ids: tokens [n, L] (or a list of id lists) -> I, D [n, k] (-1 / -inf padded)."""
        k = self._check_k(k)
        I = np.full((len(tokens), k), -1, np.int64)
        D = np.full((len(tokens), k), -np.inf, np.float32)
        reqs = [
            ("bm25", self._query_weights(self.tokenizer.decode(toks)), k, None, frozenset(), 0, None)
            for toks in tokens
        ]
        for q, (ids, scores, _) in enumerate(self._lists(reqs)):
            I[q, : len(ids)], D[q, : len(ids)] = ids, scores
        return I, D

    def search_bm25_weighted(
        self,
        term_weights: dict[str, float],
        k: int = 10,
        groups: dict[str, str] | None = None,
        *,
        late: set[str] | frozenset[str] = frozenset(),
        pool: int = 0,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 with a weight per term (terms as `index.bm25.text_terms` makes them: stemmed words,
        "a b" bigrams): score = sum of weight * term score. `groups` (term -> group name) makes a
        group's terms synonyms: each chunk counts only its best of them. `late` terms are scored only
        over each shard's top `pool` chunks by the other terms plus `candidates` (global chunk ids),
        not over every chunk (index.bm25.shard_top). (ids int64 [k'], scores float32 [k'])."""
        request = WeightedQuery(term_weights, k, groups, late, pool, candidates)
        return tuple(self.search_lists([request])[0][:2])

    def search_static(
        self, query: str, k: int = 10, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Static-embedding ANN over every chunk: (ids int64 [k'], cosine float32 [k']), best first."""
        return tuple(self.search_lists([StaticQuery(query, k, nprobe)])[0][:2])

    def search_static_tokens(
        self, tokens, k: int, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batch static ANN by token ids: tokens int [n, L] (pad-filled) -> I, D [n, k]."""
        k = self._check_k(k)
        vectors = self.static.embed_tokens(np.asarray(tokens))
        (per_shard,), _ = self._shard_jobs([("ann", (vectors, k, nprobe or self.nprobe), None)])
        return self._merge_ann(per_shard, len(vectors), k)

    def search_lists(self, requests: list) -> list[Listed]:
        """Several ranked lists at once (index/lists.py: `BM25Query`, `WeightedQuery`, `StaticQuery`),
        each as its single search would give it: one `Listed(ids, scores, ms)` per request, in order.
        The shards count every BM25 list's terms together, then run every list's part together, so
        an index whose shards are elsewhere (pipelines/ray_search.py) waits on them twice in all."""
        if not isinstance(requests, (list, tuple)):
            raise ValueError("requests: expected a list of BM25Query / WeightedQuery / StaticQuery")
        return self._lists([self._check_request(r) for r in requests])

    def _check_request(self, r) -> tuple:
        """A request checked (one-line ValueError naming the argument) and in the form `_lists` runs:
        ("bm25", term_weights, k, groups, late, pool, candidates per shard) or ("ann", vectors, k, nprobe)."""
        if isinstance(r, BM25Query):
            k = self._check_k(r.k)
            self._query_tokens(r.text)
            return ("bm25", self._query_weights(r.text), k, None, frozenset(), 0, None)
        if isinstance(r, StaticQuery):
            k = self._check_k(r.k)
            self._query_tokens(r.text)
            return ("ann", self.static.embed_texts([r.text]), k, r.nprobe or self.nprobe)
        if not isinstance(r, WeightedQuery):
            raise ValueError(f"requests: {type(r).__name__} is not a BM25Query, WeightedQuery or StaticQuery")
        k = self._check_k(r.k)
        term_weights, groups, late, pool = r.term_weights, r.groups, r.late, r.pool
        if not isinstance(term_weights, dict) or not term_weights:
            raise ValueError("term_weights: expected a non-empty dict of BM25 term -> weight")
        bad = [t for t, w in term_weights.items() if not isinstance(t, str) or not np.isfinite(w) or w < 0]
        if bad:
            raise ValueError(f"term_weights: terms must be strings with finite weights >= 0 (bad: {bad[:3]})")
        if groups is not None and (
            not isinstance(groups, dict) or not all(isinstance(g, str) for g in groups.values())
        ):
            raise ValueError("groups: expected a dict of BM25 term -> group name (str)")
        if not isinstance(late, (set, frozenset)) or not all(isinstance(t, str) for t in late):
            raise ValueError("late: expected a set of BM25 terms (str)")
        if not isinstance(pool, (int, np.integer)) or pool < 0:
            raise ValueError(f"pool: must be an integer >= 0, got {pool!r}")
        per_shard = None
        if r.candidates is not None:
            cand = np.unique(np.asarray(r.candidates, np.int64))
            if cand.size and (cand[0] < 0 or cand[-1] >= self.num_chunks):
                raise ValueError(f"candidates: chunk ids must be in [0, {self.num_chunks})")
            starts = self._chunk_start  # [shards + 1]
            cut = np.searchsorted(cand, starts)
            per_shard = [cand[cut[s] : cut[s + 1]] - starts[s] for s in range(len(self._shards))]
        return ("bm25", term_weights, k, groups, frozenset(late), int(pool), per_shard)

    def _lists(self, reqs: list[tuple]) -> list[Listed]:
        """Checked requests -> their lists: the document frequencies of every BM25 list's terms in one
        `_bm25_df` (the global idf), every list's per-shard top-k in one `_shard_jobs`, then the merges."""
        from index.bm25 import global_idf, term_hashes, weighted_query

        plans = [weighted_query(r[1], r[3]) if r[0] == "bm25" and r[1] else None for r in reqs]
        hashes = [None if p is None else term_hashes(p[0]) for p in plans]
        asked = [h for h in hashes if h is not None and h.size]
        counted = np.unique(np.concatenate(asked)) if asked else np.zeros(0, np.uint64)
        df = self._bm25_df(counted) if counted.size else np.zeros(0, np.int64)
        jobs, job_of = [], []  # job_of[r]: the job of request r, or None (an empty query)
        for r, plan, h in zip(reqs, plans, hashes, strict=True):
            if r[0] == "ann":
                job_of.append(len(jobs))
                jobs.append(("ann", r[1:], None))
            elif plan is None:
                job_of.append(None)
            else:
                terms, term_weight, group_ids = plan
                is_late = np.array([t in r[4] for t in terms]) if r[4] else None
                idf_all = global_idf(df[np.searchsorted(counted, h)], self.num_chunks)
                job_of.append(len(jobs))
                jobs.append(("bm25", (h, term_weight, idf_all, group_ids, r[2], is_late, r[5]), r[6]))
        answers, seconds = self._shard_jobs(jobs)
        out = []
        for r, j in zip(reqs, job_of, strict=True):
            t0 = time.perf_counter()
            if j is None:
                ids, scores = merge_topk([], r[2])
            elif r[0] == "ann":
                I, D = self._merge_ann(answers[j], 1, r[2])
                ids, scores = I[0][I[0] >= 0], D[0][I[0] >= 0]
            else:
                starts = self._chunk_start
                ids, scores = merge_topk([(i + starts[s], sc) for s, (i, sc) in enumerate(answers[j])], r[2])
            ms = (time.perf_counter() - t0) * 1e3 + (0.0 if j is None else seconds[j] * 1e3)
            out.append(Listed(ids, scores, ms))
        return out

    def _merge_ann(self, per_shard: list, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-shard ANN answers (local I, D [n, k']) -> global I, D [n, k] (-1 / -inf padded)."""
        per_shard = [
            (np.where(I >= 0, I + self._chunk_start[s], -1), D) for s, (I, D) in enumerate(per_shard)
        ]
        I_out = np.full((n, k), -1, np.int64)
        D_out = np.full((n, k), -np.inf, np.float32)
        for q in range(n):
            ids, scores = merge_topk([(I[q], D[q]) for I, D in per_shard], k)
            I_out[q, : len(ids)], D_out[q, : len(ids)] = ids, scores
        return I_out, D_out

    def bm25_term_idf(self, terms: list[str]) -> np.ndarray:
        """float64 [n]: each BM25 term's idf over the whole index (a term no chunk has: the rarest)."""
        from index.bm25 import global_idf, term_hashes

        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ValueError("terms: expected a list of BM25 terms (str)")
        return global_idf(self._bm25_df(term_hashes(terms)), self.num_chunks) if terms else np.zeros(0)

    def bm25_idf_mass(self, query: str, known: set[str] | None = None) -> float:
        """About the BM25 score a chunk of average length holding each query term once would get
        (sum of global idf over the query's terms): search_bm25 score / this = query coverage.
        `known`: BM25 terms of real words; an absent term outside it (a typo) then counts 0."""
        from index.bm25 import idf_mass_of, term_hashes, weighted_query

        term_weights = self._query_weights(query)
        if not term_weights:
            return 0.0
        terms, weights, _ = weighted_query(term_weights)
        return idf_mass_of(terms, weights, self._bm25_df(term_hashes(terms)), self.num_chunks, known)

    def corpus_words(self, limit: int = 0) -> dict[str, int]:
        """{word: count} of the corpus's plain words (lower-cased, alphabetic, 3-24 letters, no stop
        words) summed over shards, most frequent first (ties alphabetically); the top `limit` only
        when > 0. Empty for an index built before shards kept their word counts."""
        from index.expansion_table import corpus_word_counts

        if limit < 0:
            raise ValueError(f"corpus_words: limit must be >= 0, got {limit}")
        return corpus_word_counts([sh.folder for sh in self._shards], limit)

    def expansion_table(self):
        """The words query expansion reaches and their dense vectors, as the build stored them
        (index/expansion_table.py; vectors memory-mapped, loaded once), or None for an index built
        before the table existed. ValueError when its files are missing or damaged."""
        if not hasattr(self, "_expansion"):
            from index.expansion_table import load_table

            self._expansion = load_table(self.path, self.manifest.get("expansion"))
        return self._expansion

    def _query_weights(self, text: str) -> dict[str, float]:
        from index.bm25 import query_term_weights

        cfg = self.manifest["bm25"]
        return query_term_weights(
            text, cfg["bigrams"], cfg.get("bigram_weight", 1.0), cfg.get("compounds", False)
        )

    # -- the per-shard work of a query: a subclass may run it elsewhere (pipelines/ray_search.py) --
    def _bm25_df(self, hashes: np.ndarray) -> np.ndarray:
        """Each hashed term's document frequency over every shard (int64 [n])."""
        from index.bm25 import shard_dfs

        return shard_dfs([sh.bm25 for sh in self._shards], hashes)

    def _shard_jobs(self, jobs: list[tuple]) -> tuple[list[list], list[float]]:
        """index.lists.run_jobs over every shard: per job, its per-shard answers in manifest order,
        and its seconds."""
        return run_jobs(self._shards, jobs)

    # -- reading chunks ------------------------------------------------------------------------------
    def _gather(self, ids: np.ndarray, field: str, width: tuple[int, ...], dtype) -> np.ndarray:
        """Rows of a per-shard array (`tokens`, `chunk_doc`, `dense`) for global ids, one read per shard."""
        shard, local = self._locate(ids)
        out = np.empty((len(ids), *width), dtype)
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            out[at] = getattr(self._shards[s], field)[local[at]]
        return out

    def chunk_tokens(self, ids) -> np.ndarray:
        """Tokens of chunks: [n, M] in the index's dtype (pad where the document ended)."""
        ids = self._check_ids(ids)
        return self._gather(ids, "tokens", (self.chunk_len,), self.tokenizer.dtype)

    def _next_in_doc(self, ids: np.ndarray) -> np.ndarray:
        """The id of each chunk's continuation in the same document, or -1."""
        shard, local = self._locate(ids)
        last = (
            local + 1 >= np.array([len(self._shards[s].chunk_doc) for s in range(len(self._shards))])[shard]
        )
        nxt = np.where(last, ids, ids + 1)  # a shard's last chunk ends its document
        same = (self.chunk_doc(nxt) == self.chunk_doc(ids)) & ~last
        return np.where(same, ids + 1, -1)

    def neighbour_tokens(self, ids) -> np.ndarray:
        """Chunk + continuation, as RETRO reads a neighbour: [n, 2M] (pad when the document ended)."""
        ids = self._check_ids(ids)
        out = np.full((len(ids), 2 * self.chunk_len), self.tokenizer.pad_id, self.tokenizer.dtype)
        out[:, : self.chunk_len] = self.chunk_tokens(ids)
        nxt = self._next_in_doc(ids)
        has = nxt >= 0
        if has.any():
            out[has, self.chunk_len :] = self.chunk_tokens(nxt[has])
        return out

    def chunk_text(self, ids) -> list[str]:
        """Decoded text of each chunk."""
        return self.tokenizer.decode_rows(self.chunk_tokens(ids))

    def neighbour_text(self, ids) -> list[str]:
        """Decoded chunk + continuation of each chunk."""
        return self.tokenizer.decode_rows(self.neighbour_tokens(ids))

    def chunk_doc(self, ids) -> np.ndarray:
        """Global document index of each chunk: int64 [n]."""
        ids = self._check_ids(ids)
        shard, _ = self._locate(ids)
        doc_base = np.array([sh.doc_base for sh in self._shards], np.int64)
        return self._gather(ids, "chunk_doc", (), np.int64) + doc_base[shard]

    def provenance(self, ids) -> list[dict]:
        """Where each chunk comes from: doc_id, source, line, doc_index, token_start, char_start, char_end.

        char_start/char_end index the document's text (add `doc_char_offset` for a part of a long file).
        """
        ids = self._check_ids(ids)
        shard, local = self._locate(ids)
        out = []
        for cid, s, j in zip(ids, shard, local, strict=True):
            sh = self._shards[s]
            d = int(sh.chunk_doc[j])
            doc = sh.docs[d]
            tok, c0, c1 = (int(x) for x in sh.chunk_span[j])
            out.append(
                {
                    "chunk": int(cid),
                    "doc_id": doc["doc_id"],
                    "source": doc["source"],
                    "line": doc["line"],
                    "doc_index": sh.doc_base + d,
                    "doc_char_offset": doc["char_offset"],
                    "token_start": tok,
                    "char_start": c0,
                    "char_end": c1,
                }
            )
        return out

    def dense_vectors(self, ids) -> np.ndarray:
        """Stored dense vectors: float32 [n, D], L2-normalised. ValueError when the index has none."""
        if not self.has_dense:
            raise ValueError(f"{self.path}: built without the dense tier (rebuild with --dense)")
        ids = self._check_ids(ids)
        return self._gather(ids, "dense", (self.manifest["dense"]["dim"],), np.float32)

    def dense_encoder(self):
        """The SentenceTransformer this index was built with (loaded offline, once per process)."""
        from index.embedders import dense_model_sha, load_dense

        model_id = self.manifest["dense"]["model"]
        if dense_model_sha(model_id) != self.manifest["dense"]["sha256"]:
            raise ValueError(
                f"dense model {model_id!r} on this machine differs from the one {self.path} was built with"
            )
        return load_dense(model_id)

    # -- summary -------------------------------------------------------------------------------------
    def info(self) -> dict:
        """Counts, tiers and sizes: what `retro index info` prints."""
        m = self.manifest
        listed = {s["name"] for s in m["shards"]}
        disk = sum(
            p.stat().st_size
            for p in self.path.rglob("*")
            if p.is_file()
            and _counts_on_disk(
                p.relative_to(self.path).parts, listed, (m.get("expansion") or {}).get("folder")
            )
        )
        tiers = ["bm25", f"static:{m['static']['kind']}:{m['static']['dim']}d ({m['faiss']['factory']})"]
        if self.has_dense:
            tiers.append(f"dense:{self.dense_model_id}:{m['dense']['dim']}d")
        if m.get("expansion"):
            tiers.append(f"expansion:{m['expansion']['words']} words")
        warnings: dict[str, int] = {}
        for corpus in m["corpora"]:
            for kind, n in corpus["input"]["warnings"].items():
                warnings[kind] = warnings.get(kind, 0) + n
        return {
            "path": str(self.path),
            "docs": self.num_docs,
            "tokens": self.num_tokens,
            "chunks": self.num_chunks,
            "shards": len(self._shards),
            "generation": self.generation,
            "chunk_len": self.chunk_len,
            "tiers": tiers,
            "tokenizer": {"vocab_size": m["tokenizer"]["vocab_size"], "sha256": m["tokenizer"]["sha256"]},
            "faiss_factory": m["faiss"]["factory"],
            "bytes_on_disk": disk,
            "bytes_per_token": round(disk / max(1, self.num_tokens), 3),
            "input_warnings": warnings,
            "warnings": list(m.get("warnings", [])),
            **({"verified": self.verified} if self.verified else {}),
        }
