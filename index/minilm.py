"""MiniLM (any BERT sentence-transformer with mean pooling) run in numpy: no torch, no transformers.

Why: every `retro search` spent 14 s (under load; 10-50 s reported) importing sentence-transformers,
transformers and torch before its first query, for 2-3 s of search. The model is six small BERT
layers; numpy's BLAS runs them nearly as fast as torch on this CPU (one forward of 32 chunks of 126
tokens, side by side at a load of ~6: numpy 3.7-4.6 s, torch 3.4-3.8 s; GELU's erf in cache-sized
blocks, attention one text at a time), and the fast `tokenizers` library gives the same
WordPiece ids. Importing the CLI and loading the 90 MB of weights takes 0.7-0.9 s instead of 14 s
(BENCHMARKS.md "First queries").

What it computes is `SentenceTransformer.encode` (mean pooling over the attention mask, then L2
normalisation) and, for the cascade's late interaction, the last hidden states. tests/test_minilm.py
checks both against sentence-transformers on real text (measured: sentence vectors within 2e-7,
token states within 5e-6; the tests allow 1e-5 and 1e-4).

Supported: a local sentence-transformers folder whose modules are Transformer (model_type "bert",
absolute positions, GELU) + mean Pooling (+ Normalize), with `model.safetensors` and `tokenizer.json`:
the packaged all-MiniLM-L6-v2 is one (`numpy_supported`). For anything else
`index.embedders.load_dense` falls back to sentence-transformers.

Legend: B batch, L length (WordPiece tokens), D model dim, H heads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_ERF_P = 0.3275911  # Abramowitz & Stegun 7.1.26: erf(z) = 1 - t * poly(t) * exp(-z^2), t = 1 / (1 + P z)
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), in place on `x` (float32 [n, F]), returned.

    numpy has no erf (scipy.special costs ~0.5 s of import), so erf is Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7; measured against math.erf, the GELU is within 5e-7). Rows go in blocks small
    enough for the CPU cache: the dozen temporaries then cost ~4x less than over the whole array."""
    f = np.float32
    for i in range(0, len(x), 64):
        v = x[i : i + 64]
        z = np.abs(v)
        z *= f(np.sqrt(0.5))
        t = z * f(_ERF_P)
        t += f(1.0)
        np.reciprocal(t, out=t)
        p = np.full_like(t, f(_ERF_A[4]))
        for c in _ERF_A[3::-1]:
            p *= t
            p += f(c)
        p *= t
        np.square(z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        p *= z  # erfc(|v| / sqrt 2)
        p *= f(0.5)
        np.copysign(p, -v, out=p)  # Phi(v) = 1 - erfc/2 for v >= 0, erfc/2 below
        p += v >= 0
        v *= p
    return x


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(eps)) * w + b


_CONTROLLER = None  # threadpoolctl's view of the loaded BLAS, made on the first limited forward


class NumpyBert:
    """A BERT sentence encoder over safetensors weights; the subset of SentenceTransformer's API the
    project uses (`encode`, `max_seq_length`, `get_embedding_dimension`) plus `tokenize` / `hidden`
    for token-level embeddings (pipelines/dense.py)."""

    def __init__(self, folder: str | Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        st_cfg = folder / "sentence_bert_config.json"
        self.max_seq_length = (
            int(json.loads(st_cfg.read_text()).get("max_seq_length", 512)) if st_cfg.is_file() else 512
        )
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        w = load_file(str(folder / "model.safetensors"))
        w = {k.removeprefix("bert."): v for k, v in w.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")])
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append(
                {
                    "qkv": (np.ascontiguousarray(qkv_w.T), qkv_b),  # [D, 3D]: one matmul for q, k, v
                    "out": (
                        np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                        w[p + "attention.output.dense.bias"],
                    ),
                    "ln1": (
                        w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"],
                    ),
                    "up": (
                        np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                        w[p + "intermediate.dense.bias"],
                    ),
                    "down": (
                        np.ascontiguousarray(w[p + "output.dense.weight"].T),
                        w[p + "output.dense.bias"],
                    ),
                    "ln2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                }
            )
        self.dim = int(self.word.shape[1])
        # BLAS threads of a forward (0: BLAS's default, every core). The cascade sets 1 (its
        # torch_threads): on a busy 2-core box two threads fight for the cores and a query is slower
        self.threads = 0
        modules = (
            json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").is_file() else []
        )
        self.normalize = any(
            m.get("type", "").endswith("Normalize") for m in modules
        )  # ST always normalises then
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.pad_id = int(cfg.get("pad_token_id", 0))
        specials = ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")
        self.special_ids = {i for t in specials if (i := self.tokenizer.token_to_id(t)) is not None}

    # -- the SentenceTransformer surface ----------------------------------------------------------
    def get_embedding_dimension(self) -> int:
        return self.dim

    get_sentence_embedding_dimension = get_embedding_dimension

    def encode(
        self,
        texts,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        **_,
    ) -> np.ndarray:
        """Mean-pooled sentence vectors: float32 [n, D] (or [D] for one str), as SentenceTransformer's.
        Texts are batched by length (longest first), so padding stays small."""
        one = isinstance(texts, str)
        texts = [texts] if one else list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), batch_size):
            part = order[s : s + batch_size]
            ids, mask = self.tokenize([texts[i] for i in part], self.max_seq_length)
            out[part] = self.pool(self.hidden(ids, mask), mask)
        if normalize_embeddings or self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if one else out

    # -- the forward pass ---------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """WordPiece tokens of `text` with [CLS] and [SEP], before any truncation."""
        return len(self.tokenizer.encode(text).ids)

    def tokenize(self, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(input ids int64 [B, L], attention mask bool [B, L]): [CLS] text [SEP], cut to `max_len`
        (its last place kept for [SEP], as the transformers tokenizer truncates), right-padded."""
        encs = self.tokenizer.encode_batch(texts)
        rows = [e.ids if len(e.ids) <= max_len else e.ids[: max_len - 1] + e.ids[-1:] for e in encs]
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_id, np.int64)
        mask = np.zeros((len(rows), length), bool)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = r
            mask[b, : len(r)] = True
        return ids, mask

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states float32 [B, L, D] (padding rows are computed but meaningless), with
        BLAS limited to `self.threads` when > 0."""
        if self.threads > 0:
            from threadpoolctl import ThreadpoolController

            global _CONTROLLER
            _CONTROLLER = _CONTROLLER or ThreadpoolController()
            with _CONTROLLER.limit(limits=self.threads, user_api="blas"):
                return self._hidden(ids, mask)
        return self._hidden(ids, mask)

    def _hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        B, L = ids.shape
        H, D = self.heads, self.dim
        dh = D // H
        x = self.word[ids] + self.pos[:L] + self.type0  # [B L D]
        x = _layer_norm(x, *self.emb_ln, self.eps).reshape(B * L, D)
        bias = np.where(mask, np.float32(0.0), np.finfo(np.float32).min)[:, None, :]  # [B 1 L]
        scale = np.float32(1.0 / np.sqrt(dh))
        for layer in self.layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]  # [B*L, 3D]
            qkv = qkv.reshape(B, L, 3, H, dh).transpose(0, 2, 3, 1, 4)  # [B 3 H L dh]
            ctx = np.empty((B, L, H, dh), np.float32)
            for b in range(B):  # one text at a time: its [H L L] scores stay in the CPU cache
                scores = (qkv[b, 0] * scale) @ qkv[b, 1].transpose(0, 2, 1)  # [H L L]
                scores += bias[b]
                scores -= scores.max(-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(-1, keepdims=True)
                ctx[b] = (scores @ qkv[b, 2]).transpose(1, 0, 2)  # [L H dh]
            ctx = ctx.reshape(B * L, D)
            x = _layer_norm(ctx @ layer["out"][0] + layer["out"][1] + x, *layer["ln1"], self.eps)
            up = x @ layer["up"][0]
            up += layer["up"][1]
            up = _gelu(up)
            x = _layer_norm(up @ layer["down"][0] + layer["down"][1] + x, *layer["ln2"], self.eps)
        return x.reshape(B, L, D)

    @staticmethod
    def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean over the masked tokens: [B, L, D] -> [B, D] (sentence-transformers' mean pooling)."""
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(1) / np.maximum(m.sum(1), np.float32(1e-9))


def numpy_supported(folder: str | Path) -> bool:
    """Whether `folder` holds a model NumpyBert runs exactly: BERT with absolute positions and GELU,
    mean pooling only, safetensors weights and a fast tokenizer file."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text())
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return False
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        return False
    pool_path = folder / next(m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling"))
    try:
        pool = json.loads((pool_path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    modes = [k for k, v in pool.items() if k.startswith("pooling_mode") and v]
    return (
        cfg.get("model_type") == "bert"
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and cfg.get("hidden_act") == "gelu"
        and modes == ["pooling_mode_mean_tokens"]
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
    )
