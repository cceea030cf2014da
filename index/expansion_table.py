"""The expansion table: dense vectors of the words a question can be expanded into, stored in the index.

Why: query expansion (pipelines/expansion.py) compares a question's words with every vocabulary word
through the dense model. Embedding those words on the first query blocked it for 2-5 minutes without
a word (302 s on a 5M-token man-page index; 77 s after an append). The build now embeds them, with a
labelled bar, and the query path only memory-maps the result: on a 3M-token index the first query
went from 117 s to 4.7 s wall, 73 s to 3.2 s after an append, for +139 s of build (the model's
words once per machine, then the corpus's) and +6.6 s of append (BENCHMARKS.md "First queries").

What it holds (IDX/expansion/NNNNNN/, NNNNNN = the corpus number of the build or append that wrote it):

    words.json    {"words": [V], "stems": [V lists of BM25 terms], "vocabulary": n,
                   "corpus": [row of each corpus word, most frequent first], "model_sha256", "dim"}
    vectors.npy   float16 [V, D], L2-normalised; rows [0, n) are the dense model's own plain
                  WordPiece words (~21k for MiniLM), the rest the corpus's words WordPiece lacks

The corpus words are the index's `CORPUS_WORDS` most frequent plain words (all shards' counts
merged); the query side takes the first `expand_corpus_words` of `corpus`, as it did before. An
append embeds only the words that are new to the table, copies the old rows and writes the next
folder; the manifest (written last) names the folder, its files' sizes and sha256, so an unfinished
append leaves the old index and its table valid. The model's own words are embedded once per machine
and cached under $RETRO_CACHE/expansion/<model>/ (a build then copies them). The corpus's words are
embedded in blocks of `BLOCK`, each saved under $RETRO_CACHE/expansion/<model>/blocks/ by the sha256
of its words (atomic writes): a rerun after a kill embeds only the blocks that were missing, and a
rebuild of the same corpus (another shard size, a test suite's dozen builds of one corpus) none.
Ties in word counts are broken alphabetically, so the blocks do not depend on how shards split.

An index built before the table existed has no "expansion" entry: `cached_table` embeds its words
on first use as before (cached under $RETRO_CACHE, with a bar), and the cascade says so on stderr.

Legend: V words, D dense dim.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.bm25 import STOPWORDS, read_words, text_words
from index.embedders import cache_dir, dense_model_sha, npy_bytes
from util.progress import bar, kill_point, phase
from util.runinfo import atomic_write_bytes, atomic_write_text, remove_path

TABLE_DIR = "expansion"
CORPUS_WORDS = 50_000  # corpus words embedded at build (pipelines CascadeConfig.expand_corpus_words' default)
BLOCK = 4096  # words embedded per resumable block (~20 s of MiniLM on 2 cores)
FILES = ("words.json", "vectors.npy")


@dataclass(frozen=True)
class ExpansionTable:
    """The words expansion can reach, their BM25 terms and dense vectors (memory-mapped when stored)."""

    words: list[str]  # [V] row order: the model's plain words, then the corpus's own
    stems: list[list[str]]  # [V] each word's BM25 terms (index.bm25.text_words)
    vectors: np.ndarray  # float16 [V, D], L2-normalised
    vocabulary: int  # rows [0, vocabulary) are the dense model's plain WordPiece words
    corpus: np.ndarray  # int64 rows of the corpus's words, most frequent first (vocabulary rows too)

    def rows(self, corpus_words: int) -> np.ndarray:
        """int64 rows expansion uses: every vocabulary word, then the rows of the `corpus_words` most
        frequent corpus words that the vocabulary lacks."""
        extra = self.corpus[:corpus_words]
        return np.concatenate([np.arange(self.vocabulary), extra[extra >= self.vocabulary]]).astype(np.int64)


def vocabulary_words(tokenizer) -> list[str]:
    """Plain words of a WordPiece vocabulary: alphabetic, >= 3 letters, not stop words, sorted."""
    vocab = getattr(tokenizer, "vocab", None) or tokenizer.get_vocab()
    return sorted({w for w in vocab if w.isalpha() and w.islower() and len(w) >= 3 and w not in STOPWORDS})


def corpus_word_counts(shard_folders: list[Path], limit: int = 0) -> dict[str, int]:
    """{word: count} of the shards' plain words merged, most frequent first, ties alphabetically (the
    top `limit` if > 0): the same order however the corpus was split into shards."""
    total: Counter[str] = Counter()
    for folder in shard_folders:
        total.update(read_words(Path(folder) / "bm25"))
    ranked = sorted(total.items(), key=lambda wc: (-wc[1], wc[0]))
    return dict(ranked[:limit] if limit else ranked)


def embed_words(
    model, words: list[str], *, parts: Path | None, desc: str, quiet: bool, block: int = BLOCK
) -> np.ndarray:
    """float16 [n, D] L2-normalised vectors of `words`, one word a text, with a bar named `desc`.
    With `parts`, each `block` of words is saved there under the sha256 of its words (atomic), and
    a block already there is read instead of embedded: a killed build resumes where it stopped."""
    dim = int(model.get_embedding_dimension())
    out = np.zeros((len(words), dim), np.float16)
    with bar(len(words), desc, quiet, unit="word") as progress:
        for lo in range(0, len(words), block):
            part = words[lo : lo + block]
            path = None
            if parts is not None:
                key = hashlib.sha256("\n".join(part).encode()).hexdigest()[:24]
                path = parts / f"{key}.npy"
                if path.is_file():
                    out[lo : lo + len(part)] = np.load(path)
                    progress.update(len(part))
                    continue
            for b in range(lo, lo + len(part), 256):  # the bar moves every batch, not every block
                vecs = model.encode(
                    words[b : min(b + 256, lo + len(part))], batch_size=256, normalize_embeddings=True
                )
                out[b : b + len(vecs)] = np.asarray(vecs, np.float16).reshape(len(vecs), dim)
                progress.update(len(vecs))
            if path is not None:
                atomic_write_bytes(path, npy_bytes(out[lo : lo + len(part)]))
    return out


def model_vocabulary(
    model, model_id: str, *, quiet: bool, write_cache: bool = True
) -> tuple[list[str], np.ndarray]:
    """(words [n], vectors float16 [n, D]) of the dense model's plain words: from $RETRO_CACHE, or
    embedded now (and cached there, unless not `write_cache`). Once per machine and model (~1-2 min)."""
    folder = cache_dir() / TABLE_DIR / dense_model_sha(model_id)[:16]
    words_path, vec_path = folder / "words.json", folder / "vectors.npy"
    if words_path.is_file() and vec_path.is_file():
        words = json.loads(words_path.read_text())
        vecs = np.load(vec_path, mmap_mode="r")
        if len(words) == len(vecs):
            return words, vecs
    words = vocabulary_words(model.tokenizer)
    if not words:
        raise ValueError(f"dense model {model_id!r}: its tokenizer has no plain words to expand into")
    vecs = embed_words(
        model,
        words,
        parts=folder / ".parts" if write_cache else None,
        desc=f"expansion table: {model_id} vocabulary words",
        quiet=quiet,
    )
    if write_cache:
        atomic_write_bytes(vec_path, npy_bytes(vecs))
        atomic_write_text(words_path, json.dumps(words))  # last: marks the table complete
        remove_path(folder / ".parts")
    return words, vecs


def write_table(
    out: Path,
    generation: int,
    shard_folders: list[Path],
    model_id: str,
    previous: dict | None,
    *,
    quiet: bool,
) -> dict:
    """Write IDX/expansion/<generation>/ for the index at `out` over `shard_folders` (every shard, old
    and new) and return its manifest entry. `previous`: the manifest entry of the table an append
    extends (its rows are kept, only new words are embedded), or None."""
    from index.embedders import load_dense

    sha = dense_model_sha(model_id)
    old = load_table(out, previous) if previous and previous.get("model_sha256") == sha else None
    with phase(
        f"expansion table: counting the words of {len(shard_folders)} shards", quiet, point="expansion"
    ):
        ranked = list(corpus_word_counts(shard_folders, CORPUS_WORDS))
    model = None
    if old is None:
        with phase(f"expansion table: loading {model_id}", quiet):
            model = load_dense(model_id)
        words, vecs = model_vocabulary(model, model_id, quiet=quiet)
        words, vecs, vocabulary = list(words), [np.asarray(vecs, np.float16)], len(words)
        stems = [text_words(w) for w in words]
    else:
        words, vecs, vocabulary, stems = (
            list(old.words),
            [np.asarray(old.vectors)],
            old.vocabulary,
            list(old.stems),
        )
    row = {w: i for i, w in enumerate(words)}
    new = [w for w in ranked if w not in row]
    if new:
        if model is None:
            with phase(f"expansion table: loading {model_id}", quiet):
                model = load_dense(model_id)
        vecs.append(
            embed_words(
                model,
                new,
                parts=cache_dir() / TABLE_DIR / sha[:16] / "blocks",
                desc=f"expansion table: {len(new):,} corpus words",
                quiet=quiet,
            )
        )
        for w in new:
            row[w] = len(words)
            words.append(w)
            stems.append(text_words(w))
    vectors = np.concatenate(vecs)
    name = f"{TABLE_DIR}/{generation:06d}"
    folder = out / name
    meta_json = json.dumps(
        {
            "words": words,
            "stems": stems,
            "vocabulary": vocabulary,
            "corpus": [row[w] for w in ranked],
            "model_sha256": sha,
            "dim": int(vectors.shape[1]),
        }
    )
    blobs = {"vectors.npy": npy_bytes(vectors), "words.json": meta_json.encode()}
    for fname in FILES[::-1]:  # words.json last: it names the rows vectors.npy must hold
        atomic_write_bytes(folder / fname, blobs[fname])
        kill_point("expansion")  # crash tests: vectors.npy written, words.json not yet (n=2); both (n=3)
    return {
        "folder": name,
        "model": model_id,
        "model_sha256": sha,
        "dim": int(vectors.shape[1]),
        "words": len(words),
        "vocabulary": vocabulary,
        "corpus_words": len(ranked),
        "new_words": len(new),  # corpus words this build or append embedded
        "files": {f: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for f, b in blobs.items()},
    }


def finish_table(out: Path, entry: dict) -> None:
    """After the manifest names `entry`'s folder: remove older tables (and what a killed append left)."""
    keep = Path(entry["folder"]).name
    folder = out / TABLE_DIR
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name != keep:
                remove_path(p)


def load_table(index_path: Path, entry: dict | None, *, verify: bool = False) -> ExpansionTable | None:
    """The table a manifest entry names, vectors memory-mapped; None when there is none (an index
    built before the table). ValueError when its files are missing or do not match the entry."""
    if not entry:
        return None
    folder = Path(index_path) / entry["folder"]
    for fname in FILES:
        f = folder / fname
        want = entry["files"][fname]
        if not f.is_file() or f.stat().st_size != want["bytes"]:
            raise ValueError(
                f"{f}: missing or its size differs from index.json (index {index_path} is damaged)"
            )
        if verify and hashlib.sha256(f.read_bytes()).hexdigest() != want["sha256"]:
            raise ValueError(f"{f}: sha256 differs from index.json (index {index_path} is damaged)")
    meta = json.loads((folder / "words.json").read_text())
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")
    if len(vectors) != len(meta["words"]):
        raise ValueError(f"{folder}: words.json and vectors.npy disagree (index {index_path} is damaged)")
    return ExpansionTable(
        words=meta["words"],
        stems=meta["stems"],
        vectors=vectors,
        vocabulary=int(meta["vocabulary"]),
        corpus=np.asarray(meta["corpus"], np.int64),
    )


def cached_table(model, model_id: str, corpus_words: list[str], *, quiet: bool) -> ExpansionTable:
    """For an index without a stored table: the model's words and `corpus_words` (most frequent
    first) embedded now, or read from $RETRO_CACHE where an earlier query cached them (as before)."""
    words, vecs = model_vocabulary(model, model_id, quiet=quiet)
    have = {w: i for i, w in enumerate(words)}
    extra = [w for w in dict.fromkeys(corpus_words) if w not in have]
    parts = [np.asarray(vecs, np.float16)]
    if extra:
        key = hashlib.sha256("\n".join(extra).encode()).hexdigest()[:16]
        path = cache_dir() / TABLE_DIR / dense_model_sha(model_id)[:16] / f"corpus-{key}.npy"
        cached = np.load(path, mmap_mode="r") if path.is_file() else None
        if cached is None or len(cached) != len(extra):
            cached = embed_words(
                model, extra, parts=None, desc=f"expansion table: {len(extra):,} corpus words", quiet=quiet
            )
            atomic_write_bytes(path, npy_bytes(cached))
        parts.append(np.asarray(cached, np.float16))
    all_words = list(words) + extra
    row = {w: i for i, w in enumerate(all_words)}
    return ExpansionTable(
        words=all_words,
        stems=[text_words(w) for w in all_words],
        vectors=np.concatenate(parts),
        vocabulary=len(words),
        corpus=np.asarray([row[w] for w in dict.fromkeys(corpus_words)], np.int64),
    )
