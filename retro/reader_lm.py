"""The reader as a RETRO language model: real text with retrieved neighbours, and its bits per byte.

    python -m retro.reader_lm make --ckpt retro/assets/reader --corpus data/manqa/real.jsonl \
        --index data/manqa/idx --out data/reader          # lm-train.jsonl, lm-heldout.jsonl
    python -m retro.reader_lm bpb --ckpt retro/assets/reader --data data/reader/lm-heldout.jsonl

Why: the reader is trained to answer from neighbours, and a model that only ever sees QA layouts stops
being a language model (issue 10 asks that it stays a RETRO LM, and for its bpb with retrieval on and
off). Training mixes these samples in (`ReaderTrainConfig.lm_frac`).

A sample is a window of C*M reader tokens of one document of a real corpus (man pages), laid out as
the paper's LM: tokens = window[:-1], targets = window[1:], loss on every token. Chunk c's neighbours
are BM25's best chunks of the corpus's index (chunk + continuation text) for chunk c's own text, from
other documents only (the paper's filter against the document itself), and chunk c's neighbours
condition chunk c+1 (CCA's alignment), so no position ever reads text retrieved with its own future.
The exact-match feature marks neighbour tokens that occur in the chunk that retrieved them.

Documents are split by a hash of their id (10% held out); the documents of the man-page QA questions
(bench/data/manpage_qa.jsonl) are never trained on.

bpb counts the target tokens that can read neighbours (positions M-1 on; the first M-1 read none in
either mode), in UTF-8 bytes of their pieces: "on" = the retrieved neighbours, "off" = none (all
padding: CCA adds exactly zero and the copy head is off), "random" = another sample's neighbours.

Shapes: N samples, C chunks, K neighbours, R retrieved length, M chunk length, L = C*M - 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retro.reader_layout import PAD, ReaderConfig, ReaderTokenizer, mark_matches, neighbour_block
from util.runinfo import atomic_path


@dataclass(frozen=True)
class LMDataConfig:
    """What `make` samples."""

    corpus: str = "data/manqa/real.jsonl"  # real text, jsonl with "id" and "text"
    index: str = "data/manqa/idx"  # a retro index of that corpus (neighbours come from it)
    chunks: int = 4  # C: chunks of M reader tokens per sample (the last one's neighbours are unused)
    k: int = 6  # neighbours stored per chunk (training reads k_train of them, best first)
    train: int = 2000  # training samples
    heldout: int = 200  # held-out samples (bpb)
    heldout_pct: int = 10  # share of documents held out, by hash of the document id
    exclude: str = "bench/data/manpage_qa.jsonl"  # documents (doc_id) never trained on
    seed: int = 0  # window sampling


def split_of(doc_id: str, pct: int) -> str:
    """'heldout' for pct% of document ids (by sha1), else 'train'."""
    h = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if h < pct else "train"


def tokenizer_digest(tok_bytes: bytes) -> str:
    """Samples store token ids: they are only valid for the tokenizer they were made with."""
    return hashlib.sha256(tok_bytes).hexdigest()[:16]


def make(cfg: LMDataConfig, tok_bytes: bytes, out: Path, m: int) -> dict[str, int]:
    """Write out/lm-train.jsonl and out/lm-heldout.jsonl (atomic); returns sample counts."""
    from index.store import Index

    corpus, index = Path(cfg.corpus), Path(cfg.index)
    if not corpus.is_file():
        raise FileNotFoundError(
            f"{corpus}: corpus missing (../shared/tools/realtext-corpus {corpus} --tokens 3e6 --seed 0 makes it)"
        )
    if not (index / "index.json").is_file():  # the default index of the corpus (~2 min for 3M tokens)
        from index.build import BuildConfig, build_index

        build_index(corpus, index, BuildConfig())
    tok = ReaderTokenizer(tok_bytes)
    skip = set()
    if cfg.exclude and Path(cfg.exclude).is_file():
        skip = {json.loads(x)["doc_id"] for x in open(cfg.exclude, encoding="utf-8")}
    docs = {"train": [], "heldout": []}
    for line in open(corpus, encoding="utf-8"):
        d = json.loads(line)
        split = split_of(d["id"], cfg.heldout_pct)
        if split == "train" and d["id"] in skip:
            continue
        ids = tok.encode(d["text"])
        if len(ids) >= cfg.chunks * m:
            docs[split].append((d["id"], ids, d["text"]))
    idx = Index.open(index)
    rng = random.Random(cfg.seed)
    counts = {}
    for split, n in (("train", cfg.train), ("heldout", cfg.heldout)):
        pool = docs[split]
        weights = [len(ids) for _, ids, _ in pool]  # windows uniform over the split's tokens
        with atomic_path(out / f"lm-{split}.jsonl") as tmp, open(tmp, "w", encoding="utf-8") as f:
            for doc_id, ids, text in rng.choices(pool, weights=weights, k=n):
                own = shingles(text)
                a = rng.randrange(len(ids) - cfg.chunks * m + 1)
                window = ids[a : a + cfg.chunks * m]
                nbs = [
                    _neighbours(idx, tok.decode(window[c * m : (c + 1) * m]), doc_id, own, cfg.k)
                    for c in range(cfg.chunks - 1)
                ]
                f.write(
                    json.dumps(
                        {"doc": doc_id, "ids": window, "neighbours": nbs, "tok": tokenizer_digest(tok_bytes)}
                    )
                    + "\n"
                )
        counts[split] = n
    return counts


def shingles(text: str, n: int = 8) -> set[int]:
    """Hashes of the n-word windows of `text` (case and whitespace folded)."""
    w = text.lower().split()
    return {hash(tuple(w[i : i + n])) for i in range(max(0, len(w) - n + 1))}


def _neighbours(idx, text: str, doc_id: str, own: set[int], k: int) -> list[str]:
    """BM25's best chunks for `text` from other documents, chunk + continuation text, without copies of
    the document itself: man pages repeat under several names (cmsg.3 and CMSG_DATA.3), so a neighbour
    sharing more than LEAK of its 8-word windows with the sample's document is dropped (the paper's
    leakage filter, in shingles)."""
    if not any(ch.isalnum() for ch in text):
        return []
    hits, _ = idx.search_bm25(text, k=k + 20)
    keep = [p["chunk"] for p in idx.provenance(hits) if p["doc_id"] != doc_id]
    out = []
    for t in idx.neighbour_text(keep) if keep else []:
        sh = shingles(t)
        if not sh or len(sh & own) <= LEAK * len(sh):
            out.append(t)
        if len(out) == k:
            break
    return out


LEAK = 0.2  # largest share of a neighbour's 8-word windows that may also be in the sample's document


class LMSamples:
    """Tokenized LM samples laid out as training batches: tokens, targets, weights [B, L]; nb [B, C-1, K, R]."""

    def __init__(
        self, path: Path, tok: ReaderTokenizer, tok_bytes: bytes, rcfg: ReaderConfig, k: int, seed: int
    ):
        """Reads a make() file; refuses samples made with another tokenizer."""
        self.rcfg, self.k, self.rng = rcfg, k, random.Random(seed)
        self.items = []
        digest = tokenizer_digest(tok_bytes)
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            if r["tok"] != digest:
                raise ValueError(
                    f"{path}: made with another reader tokenizer; remake it (python -m retro.reader_lm make)"
                )
            nbs = [[tok.encode(t)[: rcfg.retrieved_len] for t in chunk] for chunk in r["neighbours"]]
            self.items.append((np.asarray(r["ids"], np.int32), nbs))
        if not self.items:
            raise ValueError(f"{path}: no LM samples")

    def example(self, i: int, nbs_from: int | None = None, off: bool = False):
        """Sample i laid out: tokens [L], targets [L], weights [L], neighbours [C-1, K, R].
        nbs_from: take the neighbours of another sample (the "random" ablation); off: no neighbours."""
        ids, _ = self.items[i]
        _, nbs = self.items[i if nbs_from is None else nbs_from]
        m, v = self.rcfg.chunk_len, self.rcfg.vocab_size
        c = (len(ids) - 1) // m
        block = np.full((c, self.k, self.rcfg.retrieved_len), PAD, np.int32)
        if not off:
            for j in range(min(c, len(nbs))):
                own = ids[j * m : (j + 1) * m].tolist()
                block[j] = mark_matches(
                    neighbour_block(nbs[j], self.k, self.rcfg.retrieved_len), own, v, self.rcfg.match_levels
                )
        return ids[:-1], ids[1:], np.ones(len(ids) - 1, np.float32), block

    def batch(self, b: int):
        """A random batch of b samples."""
        rows = [self.example(self.rng.randrange(len(self.items))) for _ in range(b)]
        return tuple(np.stack(x) for x in zip(*rows, strict=True))


def piece_bytes(tok: ReaderTokenizer) -> np.ndarray:
    """UTF-8 bytes each piece stands for: [V] (byte-fallback pieces 1, specials 0)."""
    out = np.zeros(tok.vocab_size, np.int64)
    for i in range(tok.vocab_size):
        if tok.sp.is_byte(i):
            out[i] = 1
        elif not (tok.sp.is_control(i) or tok.sp.is_unknown(i)):
            out[i] = len(tok.sp.id_to_piece(i).replace("▁", " ").encode("utf-8"))
    return out


def bpb(net, samples: LMSamples, tok: ReaderTokenizer, modes=("on", "off", "random"), batch: int = 8) -> dict:
    """Bits per byte of the held-out samples under each neighbour mode (see the module doc)."""
    import jax

    m = samples.rcfg.chunk_len
    nbytes = piece_bytes(tok)

    from flax import nnx

    graphdef, state = nnx.split(net)

    @jax.jit
    def logp(state, tokens, nb, targets):
        return nnx.merge(graphdef, state).answer_logprobs(tokens, nb, targets)

    n = len(samples.items)
    shift = random.Random(1).randrange(1, n) if n > 1 else 0
    out = {}
    for mode in modes:
        bits, byts = 0.0, 0
        for a in range(0, n, batch):
            rows = [
                samples.example(i, nbs_from=(i + shift) % n if mode == "random" else None, off=mode == "off")
                for i in range(a, min(a + batch, n))
            ]
            tk, tg, _, nb = (np.stack(x) for x in zip(*rows, strict=True))
            lp = np.asarray(logp(state, tk, nb, tg))[:, m - 1 :]
            bits += float(-lp.sum() / math.log(2))
            byts += int(nbytes[tg[:, m - 1 :]].sum())
        out[mode] = bits / max(byts, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: make | bpb (see the module doc)."""
    ap = argparse.ArgumentParser(description="the reader's LM samples and bits per byte")
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="sample LM windows and their BM25 neighbours")
    mk.add_argument("--ckpt", default="retro/assets/reader", help="reader checkpoint (its tokenizer)")
    mk.add_argument("--corpus", default=LMDataConfig.corpus)
    mk.add_argument("--index", default=LMDataConfig.index)
    mk.add_argument("--out", default="data/reader")
    mk.add_argument("--train", type=int, default=LMDataConfig.train)
    mk.add_argument("--heldout", type=int, default=LMDataConfig.heldout)
    ev = sub.add_parser("bpb", help="bits per byte with retrieval on, off and random")
    ev.add_argument(
        "--ckpt",
        action="append",
        default=None,
        help="reader checkpoint, repeatable (default: the shipped one)",
    )
    ev.add_argument("--data", default="data/reader/lm-heldout.jsonl")
    ev.add_argument("--k", type=int, default=4)
    ev.add_argument("--out", default=None, help="write the figures as json here")
    args = ap.parse_args(argv)
    if args.cmd == "make":
        tok_bytes = (Path(args.ckpt) / "tokenizer.model").read_bytes()
        rcfg = ReaderConfig.from_dict(json.loads((Path(args.ckpt) / "config.json").read_text()))
        cfg = LMDataConfig(corpus=args.corpus, index=args.index, train=args.train, heldout=args.heldout)
        print(make(cfg, tok_bytes, Path(args.out), rcfg.chunk_len))
        return
    from retro.reader import ASSETS, Reader

    rows = []
    for ckpt in args.ckpt or [None]:  # several checkpoints side by side, in one run
        reader = Reader.load(ckpt)
        tok_bytes = (Path(ckpt) if ckpt else ASSETS).joinpath("tokenizer.model").read_bytes()
        samples = LMSamples(Path(args.data), reader.tok, tok_bytes, reader.cfg, args.k, 0)
        res = bpb(reader.net, samples, reader.tok)
        rows.append(
            {
                "ckpt": ckpt or str(ASSETS),
                "reader": reader.name,
                "data": args.data,
                "k": args.k,
                "samples": len(samples.items),
                **res,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        from util.runinfo import atomic_write_json, run_info

        atomic_write_json(args.out, {"rows": rows, **run_info()})


if __name__ == "__main__":
    main()
