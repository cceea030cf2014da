"""Streaming haystack writer: filler documents + needles at chosen depths -> corpus.jsonl, needles.jsonl.

`write_haystack(cfg, needle_set, out_dir)` streams documents one at a time, inserts every needle
at its target depth, and writes

- `corpus.jsonl`      `{"id": ..., "text": ...}` per document (what `index.build.build_index` reads);
- `needles.jsonl`     one line per inserted needle: key, value, task, sentence, doc id, char offset in
                      the final document text, depth, question and expected answers of its sample;
- `distractors.jsonl` (the `needles` haystack) one line per distractor sentence: text, doc id, offset;
- `haystack.json`     sizes, sha256 of corpus.jsonl, warnings (e.g. a text folder too small).

The same config and seed always give the same bytes. Sizes are in characters: `tokens *
chars_per_token` (an approximation: the index's tokenizer is not needed to generate). Chunk
boundaries, for the needles meant to straddle one, are approximated the same way: chunk j of a
document starts near character `j * chunk_tokens * chars_per_token` of that document.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evals import filler
from evals.needles import NeedleConfig, NeedleSet, distractor_stream, needle_record
from util.runinfo import atomic_path, atomic_write_json, atomic_write_text

HAYSTACK_KINDS = ("noise", "words", "needles", "text")


@dataclass(frozen=True)
class HaystackConfig:
    kind: str = "needles"  # noise | words | needles (words + distractor needles) | text (real text)
    source: str | None = None  # text: folder or .jsonl file with the documents
    tokens: int = 1_000_000  # target haystack size in tokens (approximated by characters)
    chars_per_token: float = 4.0  # characters per token used for sizes and chunk boundaries
    chunk_tokens: int = 64  # index chunk length M, for needles straddling a chunk boundary
    doc_chars: int = 8000  # synthetic documents: mean length in characters (uniform 0.5x..1.5x)
    depths: int = 11  # depth buckets spread evenly over 0..1 (needle i goes to bucket (i + trial*n) % depths)
    trial: int = 0  # repeat index: rotates depth buckets so few needles still cover every depth
    straddle_fraction: float = 0.5  # share of needles centred on an (approximate) chunk boundary
    distractor_every_chars: int = 2000  # needles haystack: one distractor sentence per this many chars
    max_doc_chars: int = 1_000_000  # text: longer files are split into documents of this size
    seed: int = 0  # everything random derives from it

    def check(self) -> HaystackConfig:
        """Raise ValueError with a one-line message if a field is out of range."""
        if self.kind not in HAYSTACK_KINDS:
            raise ValueError(f"unknown haystack kind {self.kind!r} (known: noise, words, needles, text:DIR)")
        if self.kind == "text" and not self.source:
            raise ValueError("text haystack needs a folder: --haystack text:DIR")
        if self.tokens < 1000:
            raise ValueError(f"haystack too small: {self.tokens} tokens (at least 1000)")
        if self.depths < 1 or not 0 <= self.straddle_fraction <= 1 or self.chars_per_token <= 0:
            raise ValueError("depths must be >= 1, straddle_fraction in [0, 1], chars_per_token > 0")
        return self

    @property
    def target_chars(self) -> int:
        """Haystack size in characters."""
        return int(self.tokens * self.chars_per_token)

    @property
    def chunk_chars(self) -> float:
        """Approximate characters per index chunk."""
        return self.chunk_tokens * self.chars_per_token


def depth_targets(n: int, depths: int, trial: int = 0) -> list[tuple[int, float]]:
    """(bucket, target depth) for needles 0..n-1: bucket (i + trial*n) % depths, bucket centres
    spread evenly over [0, 1], needles sharing a bucket spread evenly across its width."""
    buckets = [(i + trial * n) % depths for i in range(n)]
    if depths == 1:
        centres, width = [0.5], 1.0
    else:
        centres, width = [j / (depths - 1) for j in range(depths)], 1.0 / (depths - 1)
    count = np.bincount(buckets, minlength=depths)
    seen = [0] * depths
    out = []
    for b in buckets:
        lo, hi = max(0.0, centres[b] - width / 2), min(1.0, centres[b] + width / 2)
        c = int(count[b])
        d = centres[b] if c == 1 else lo + (hi - lo) * (seen[b] + 0.5) / c
        seen[b] += 1
        out.append((b, d))
    return out


def _docs(cfg: HaystackConfig):
    if cfg.kind == "noise":
        return filler.noise_docs(cfg.seed, cfg.doc_chars), None
    if cfg.kind in ("words", "needles"):
        return filler.words_docs(cfg.seed, cfg.doc_chars), None
    src = filler.TextSource(cfg.source, cfg.max_doc_chars)
    return src.docs(cfg.seed), src


def _insert(
    text: str, inserts: list[tuple[int, str, float | None]]
) -> tuple[str, list[int], list[float | None]]:
    """Insert sentences into `text`. Each insert is (position in `text`, sentence, chunk_chars): with
    chunk_chars None the sentence goes at the next sentence end after the position; otherwise it is
    centred on the multiple of chunk_chars (a chunk boundary, in the *result's* coordinates) nearest
    the position, snapped back to whitespace. Inserts must be sorted by position.
    Returns the new text, each sentence's offset in it, and each straddled boundary (or None)."""
    pieces: list[str] = []
    offsets: list[int] = []
    boundaries: list[float | None] = []
    cursor = 0  # in text
    out_len = 0  # length of "".join(pieces)
    for pos, sent, chunk_chars in inserts:
        boundary = None
        if chunk_chars is None:
            cut = text.find(". ", max(pos, cursor))
            cut = len(text) if cut < 0 or cut - pos > 1000 else cut + 2
            if cut == len(text) and pos < len(text) - 1:  # no sentence end nearby: next whitespace
                sp = text.find(" ", max(pos, cursor))
                cut = sp + 1 if sp >= 0 else len(text)
        else:
            shift = out_len - cursor  # result offset = text offset + shift, for text offsets >= cursor
            m = max(1, round((max(pos, cursor) + shift) / chunk_chars))
            while m * chunk_chars - len(sent) / 2 < out_len + 1:
                m += 1
            boundary = m * chunk_chars
            want = min(int(boundary - len(sent) / 2) - shift, len(text))
            sp = text.rfind(" ", cursor, want + 1)
            cut = sp + 1 if sp >= 0 else want
        pieces.append(text[cursor:cut])
        out_len += cut - cursor
        cursor = cut
        sep = " " if out_len and not pieces[-1][-1:].isspace() else ""
        offsets.append(out_len + len(sep))
        boundaries.append(boundary)
        piece = sep + sent + (" " if cut < len(text) and not text[cut].isspace() else "")
        pieces.append(piece)
        out_len += len(piece)
    pieces.append(text[cursor:])
    return "".join(pieces), offsets, boundaries


def write_haystack(
    cfg: HaystackConfig,
    needles: NeedleSet,
    out_dir: str | os.PathLike,
    needle_cfg: NeedleConfig | None = None,
    progress=None,
) -> dict:
    """Stream the haystack of `cfg` with `needles` into `out_dir`; return the haystack.json dict.
    `progress(chars)` is called after each document when given."""
    cfg.check()
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs, source = _docs(cfg)
    T = cfg.target_chars
    warn: list[str] = []
    if source is not None and source.approx_chars < T:
        passes = math.ceil(T / max(source.approx_chars, 1))
        msg = (
            f"text haystack: {cfg.source} holds ~{source.approx_chars:,} chars (~{int(source.approx_chars / cfg.chars_per_token):,}"
            f" tokens), less than the {T:,} chars requested; documents repeat (~{passes} passes)"
        )
        warn.append(msg)
        warnings.warn(msg, stacklevel=2)

    # Targets: (filler position, needle index, straddle?) sorted by position.
    all_needles = list(needles.needles)
    order = np.random.default_rng([cfg.seed, 7, cfg.trial]).permutation(len(all_needles)).tolist()
    targets = depth_targets(len(all_needles), cfg.depths, cfg.trial)
    f = cfg.straddle_fraction
    plan = []
    for rank, ni in enumerate(order):
        bucket, depth = targets[rank]
        straddle = math.floor((rank + 1) * f) > math.floor(rank * f)
        plan.append((min(int(depth * T), T - 1), ni, bucket, depth, straddle))
    plan.sort()
    placed: dict[int, dict] = {}

    distract = None
    if cfg.kind == "needles":
        distract = distractor_stream(needle_cfg or NeedleConfig(), needles.true_keys, cfg.seed)
    drng = np.random.default_rng([cfg.seed, 8, cfg.trial])

    h = hashlib.sha256()
    filler_pos = final_pos = n_docs = n_distract = 0
    p = 0  # next entry of plan
    with contextlib.ExitStack() as files:  # closed, then fsynced and renamed into place, in that order
        tmp_c = files.enter_context(atomic_path(out / "corpus.jsonl"))
        tmp_d = files.enter_context(atomic_path(out / "distractors.jsonl"))
        fc, fd = files.enter_context(open(tmp_c, "wb")), files.enter_context(open(tmp_d, "wb"))
        for doc_index, (doc_id, text) in enumerate(docs):
            last = filler_pos + len(text) >= T
            if last:
                cut = text.rfind(" ", 0, T - filler_pos)
                text = text[: cut if cut > 0 else T - filler_pos].rstrip()
            end = filler_pos + len(text)
            inserts, kinds = [], []
            while p < len(plan) and (plan[p][0] < end or last):
                pos, ni, bucket, depth, straddle = plan[p]
                local = min(pos - filler_pos, len(text))
                inserts.append((local, all_needles[ni].text, cfg.chunk_chars if straddle else None))
                kinds.append(("needle", ni, bucket, depth, straddle))
                p += 1
            if distract is not None:
                k = int(drng.poisson(len(text) / cfg.distractor_every_chars))
                for pos in sorted(drng.integers(0, max(len(text), 1), size=k).tolist()):
                    inserts.append((pos, next(distract), None))
                    kinds.append(("distractor",))
            if inserts:
                idx = sorted(
                    range(len(inserts)), key=lambda i: inserts[i][0]
                )  # stable: needles first on ties
                inserts, kinds = [inserts[i] for i in idx], [kinds[i] for i in idx]
                text, offsets, bounds = _insert(text, inserts)
                for (_, sent, _), kind, off, boundary in zip(inserts, kinds, offsets, bounds, strict=True):
                    if kind[0] == "distractor":
                        n_distract += 1
                        rec = {"text": sent, "doc_id": doc_id, "doc_index": doc_index, "offset": off}
                        fd.write((json.dumps(rec) + "\n").encode())
                        continue
                    _, ni, bucket, depth, straddle = kind
                    placed[ni] = {
                        "doc_id": doc_id,
                        "doc_index": doc_index,
                        "offset": off,
                        "length": len(sent),
                        "global_char": final_pos + off,
                        "depth_bucket": bucket,
                        "target_depth": depth,
                        "straddle": straddle,
                        "boundary_char": None if boundary is None else int(boundary),
                        "straddles_approx": boundary is not None and off < boundary < off + len(sent),
                    }
            line = (json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n").encode("utf-8")
            h.update(line)
            fc.write(line)
            n_docs += 1
            filler_pos = end
            final_pos += len(text)
            if progress is not None:
                progress(len(text))
            if last:
                break
    if distract is None:
        (out / "distractors.jsonl").unlink()  # this kind has no distractors

    by_sample = {s.sample_id: s for s in needles.samples}
    lines = []
    for ni, nd in enumerate(all_needles):
        rec = needle_record(nd) | placed[ni]
        rec["depth"] = round(rec["global_char"] / max(final_pos, 1), 6)
        s = by_sample.get(nd.sample_id)
        rec["question"] = s.question if s else None
        rec["answers"] = list(s.answers) if s else []
        lines.append(json.dumps(rec, ensure_ascii=False))
    atomic_write_text(out / "needles.jsonl", "\n".join(lines) + "\n")

    info = {
        "kind": cfg.kind,
        "source": cfg.source,
        "tokens_target": cfg.tokens,
        "chars": final_pos,
        "approx_tokens": int(final_pos / cfg.chars_per_token),
        "docs": n_docs,
        "needles": len(all_needles),
        "distractors": n_distract,
        "sha256": h.hexdigest(),
        "seconds": round(time.perf_counter() - t0, 3),
        "source_chars": None if source is None else source.approx_chars,
        "warnings": warn,
    }
    atomic_write_json(out / "haystack.json", info)
    return info
