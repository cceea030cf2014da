"""Build an index from a corpus: resumable, atomic, and appendable.

An index folder:

    index.json        the manifest, written last: format, tokenizer/embedder identities, FAISS factory,
                      counts, build config, corpora and the shard list. No index.json = not an index.
    tokenizer.model   sentencepiece model (trained on a bounded sample when none is given)
    static/           the static embedder (static.json + its table or model)
    faiss.template    the trained, empty FAISS index every shard copies (one coarse quantizer for all);
                      these three are made by index/shared.py
    shards/000000/    see index/shard.py
    expansion/NNNNNN/ the words query expansion reaches and their dense vectors (index/expansion_table.py),
                      made after the shards
    build.json        only while a build or append is unfinished: its plan, so a rerun resumes it

Resume: each shard records how many corpus documents had been read when it closed; a rerun of the
same command says how much was done, skips those documents, rebuilds the unfinished shard from
scratch, and ends byte-identical to an uninterrupted build. A command is checked, and its corpus
sample read, before build.json is written, so a rejected command leaves nothing behind; an unfinished
build with no finished shard is replaced by the next command, whatever its config.
Append: `append=True` adds the documents of a new corpus as new shards, skipping documents the index
already holds (index/dedup.py); the old shards and the old manifest stay valid until the new
manifest replaces it. Every phase is named on stderr (util/progress.py); `quiet` silences them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from index.corpus import CorpusReader, Document
from index.dedup import DUPLICATE, DocDigests, text_digests
from index.shard import ShardBuffer, read_shard_meta, write_shard
from index.shared import make_shared
from index.tokenizer import MAX_VOCAB, MIN_VOCAB, Tokenizer, sha256_file
from util.configs import config_to_dict
from util.progress import bar, kill_point, note, phase
from util.runinfo import atomic_write_json, json_text, remove_path, run_info

FORMAT_VERSION = 2  # 2: word-level BM25 with term hashes (bm25/term_hash.npy)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """How an index is built. Every field can be set with `key=value` on `retro index build`."""

    chunk_len: int = 64  # M: tokens per chunk
    vocab_size: int = 32000  # tokenizer vocabulary when one is trained (a soft limit on tiny corpora)
    tokenizer: str | None = None  # an existing sentencepiece model to use instead of training one
    sample_chars: int = 10_000_000  # characters sampled from the corpus start (tokenizer, SIF weights, IVF)
    static: str = "pooled"  # static embedder: "pooled" (token vectors over stored ids) or "model2vec"
    static_dim: int = 256  # static embedding dimensions (PCA)
    faiss_factory: str = (
        "auto"  # a FAISS factory string, or "auto": chosen by estimated size (see _auto_factory)
    )
    flat_max_chunks: int = (
        100_000  # up to this estimated chunk count "auto" picks Flat (~64 ms a query at 166k)
    )
    sq8_max_chunks: int = 1_000_000  # then IVF,SQ8 up to here (256 B a chunk), then IVF-PQ fast-scan (32 B)
    faiss_train_size: int = 200_000  # at most this many sampled chunk vectors train the coarse quantizer
    nprobe: int = 32  # IVF lists searched per query (ignored by Flat)
    dense: str | bool = "auto"  # dense MiniLM tier: "on", "off" or "auto" (on up to dense_auto_max_chunks)
    dense_auto_max_chunks: int = 4096  # ~3.5 min of MiniLM on 2 cores at ~20 chunks/s
    dense_model: str = "all-MiniLM-L6-v2"  # any sentence-transformers id or local path
    shard_chunks: int = 262_144  # a shard is closed after the document that reaches this many chunks
    batch_chars: int = 4_000_000  # characters tokenized per batch
    max_doc_chars: int = 1 << 22  # text files longer than this are split into parts
    bm25_k1: float = 1.5  # BM25 term-frequency saturation
    bm25_b: float = 0.75  # BM25 length normalisation
    bm25_bigrams: bool = True  # also index pairs of neighbouring words as terms (multi-word keys)
    bm25_bigram_weight: float = 0.5  # a query bigram's weight against a word's 1 (measured: BENCHMARKS.md)
    bm25_compounds: bool = True  # also index hyphenated compounds whole ("lemon-parrot") as terms
    # "once": two neighbour documents sharing a chunk in one 4-byte entry, same scores, 0.52x the
    # bytes (index/postings_once.py); "packed": 4 B a posting (index/postings.py); "csc": bm25s's 8 B
    bm25_postings: str = "once"
    threads: int = 2  # tokenizer threads

    def __post_init__(self) -> None:
        if isinstance(self.dense, bool):  # YAML reads `dense: on` as true
            object.__setattr__(self, "dense", "on" if self.dense else "off")

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        checks = [
            ("chunk_len", 8 <= self.chunk_len <= 4096),
            ("static_dim", 8 <= self.static_dim <= 4096),
            ("shard_chunks", self.shard_chunks >= 1),
            ("nprobe", self.nprobe >= 1),
            ("dense", self.dense in ("on", "off", "auto")),
            ("static", self.static in ("pooled", "model2vec")),
            ("bm25_postings", self.bm25_postings in ("once", "packed", "csc")),
            ("batch_chars", self.batch_chars >= 1024),
            ("threads", self.threads >= 1),
            ("sample_chars", self.sample_chars >= 1000),
            ("faiss_train_size", self.faiss_train_size >= 1),
            ("vocab_size", self.tokenizer is not None or MIN_VOCAB <= self.vocab_size <= MAX_VOCAB),
        ]
        hints = {"vocab_size": f": must be between {MIN_VOCAB} and {MAX_VOCAB} (--vocab)"}
        for name, ok in checks:
            if not ok:
                raise ValueError(
                    f"BuildConfig.{name}={getattr(self, name)!r} is not allowed{hints.get(name, '')}"
                )
        if self.tokenizer is not None and not Path(self.tokenizer).is_file():
            raise FileNotFoundError(f"{self.tokenizer}: no such tokenizer model (--tokenizer)")


# Fields an --append may change; every other field is taken from the index being appended to.
_PER_RUN_FIELDS = ("shard_chunks", "batch_chars", "max_doc_chars", "threads")
# What a build makes before its shards; an abandoned attempt's are removed when another one starts.
_SHARED_PARTS = ("tokenizer.model", "static", "faiss.template", "shards")


def _release_memory() -> None:
    """Give a finished shard's memory back to the OS, so peak memory stays that of one shard."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class _Builder:
    """One run of `build_index`: plans, prepares the shared parts, then streams shards."""

    def __init__(
        self,
        corpus: str | os.PathLike,
        out: Path,
        cfg: BuildConfig,
        append: bool,
        quiet: bool,
        keep_duplicates: bool = False,
    ) -> None:
        self.corpus, self.out, self.cfg, self.append, self.quiet = Path(corpus), out, cfg, append, quiet
        self.keep_duplicates = keep_duplicates
        self.manifest: dict | None = None
        self.resumed = False  # build.json held this very plan: an interrupted run is continued
        self.restart = False  # build.json held another plan with no finished shard: it is replaced

    # -- the plan: what build.json holds, so a rerun knows it is the same build -------------------
    def plan(self) -> dict:
        """Check the folder and decide: a new build, a resumed one, or a refusal. Writes nothing, so a
        command rejected here or while its input is read leaves no build.json to block the corrected
        one (`_start` writes it, once the build really begins)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out}: exists and is not a folder")
        manifest_path, plan_path = out / "index.json", out / "build.json"
        if manifest_path.is_file():
            self.manifest = json.loads(manifest_path.read_text())
            if self.manifest.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{manifest_path}: index format v{self.manifest.get('format_version')}, this code "
                    f"writes v{FORMAT_VERSION}; rebuild the index to append to it"
                )
            if not self.append:
                raise FileExistsError(
                    f"{out}: already holds an index of another corpus or config; use --append to add "
                    "documents, or choose another --out"
                )
        elif self.append:
            raise FileNotFoundError(f"{out}: no index to append to (no index.json)")
        elif out.exists() and any(out.iterdir()) and not plan_path.is_file():
            raise FileExistsError(
                f"{out}: folder is not empty and holds no retro index; choose an empty or new folder"
            )
        want = dict(self._command(), first_shard=len(self.manifest["shards"]) if self.manifest else 0)
        if plan_path.is_file():
            old = json.loads(plan_path.read_text())
            if {k: old.get(k) for k in want} == want:
                self.resumed = True
                return old  # resume: keep the decisions made then
            if not self.append:
                done = self._finished_shards(0)
                if done:
                    raise FileExistsError(
                        f"{out}: holds an unfinished build of {old.get('corpus')} with another config "
                        f"({len(done)} shards done); rerun that exact command to resume it, or delete the folder"
                    )
                self.restart = True  # nothing finished to keep: the corrected command goes ahead
        return dict(want)

    def _command(self) -> dict:
        """What makes two runs the same command (the plan adds where it starts: `first_shard`)."""
        command = {
            "corpus": str(self.corpus.resolve()),
            "append": self.append,
            "config": config_to_dict(self.cfg),
        }
        if self.append:
            command["keep_duplicates"] = self.keep_duplicates
        return command

    def finish_written(self) -> dict | None:
        """A run killed after writing index.json but before removing build.json is finished: its
        build.json names the sha256 of the manifest it was writing, and index.json is that manifest.
        Remove build.json; return the manifest when that run was this very command (nothing to do),
        else None (this command then goes ahead against the finished index)."""
        plan_path, manifest_path = self.out / "build.json", self.out / "index.json"
        if not (plan_path.is_file() and manifest_path.is_file()):
            return None
        old = json.loads(plan_path.read_text())
        if old.get("manifest_sha256") != sha256_file(manifest_path):
            return None  # killed before its manifest was written: a resume writes it
        note(
            f"{self.out}: the last run wrote its manifest and stopped before removing build.json; done",
            self.quiet,
        )
        from index.expansion_table import finish_table

        plan_path.unlink()
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("expansion"):
            finish_table(self.out, manifest["expansion"])  # the older table that run had not removed yet
        same = all(old.get(k) == v for k, v in self._command().items())
        return manifest if same else None

    def _start(self, plan: dict) -> None:
        """The build begins: clear what an abandoned attempt left, then write build.json."""
        if self.restart:
            note(f"{self.out}: replacing an unfinished build there that had no finished shard", self.quiet)
            for name in _SHARED_PARTS:
                remove_path(self.out / name)
        self._discard_unlisted_shards()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / "build.json", plan)

    def _discard_unlisted_shards(self) -> None:
        listed = {s["name"] for s in (self.manifest or {}).get("shards", [])}
        shards = self.out / "shards"
        if shards.is_dir():
            for p in shards.iterdir():
                if p.name not in listed:
                    shutil.rmtree(p)

    # -- shared parts: tokenizer, static embedder, FAISS template ---------------------------------
    def prepare(self, plan: dict) -> None:
        from index.embedders import load_static

        cfg, out = self.cfg, self.out
        tok_path = out / "tokenizer.model"
        if self.manifest:  # append: everything shared comes from the index
            if cfg.tokenizer and sha256_file(cfg.tokenizer) != self.manifest["tokenizer"]["sha256"]:
                raise ValueError(
                    f"{cfg.tokenizer}: not the tokenizer this index was built with "
                    f"({self.manifest['tokenizer']['sha256'][:12]}...)"
                )
            if not self.resumed:
                self._start(plan)
            self.tokenizer = Tokenizer(tok_path)
            self.static = load_static(out / "static", self.tokenizer)
            return
        if "tokenizer_sha256" not in plan:
            begin = (lambda: None) if self.resumed else (lambda: self._start(plan))
            self.tokenizer, self.static, decisions = make_shared(
                self.corpus, out, cfg, quiet=self.quiet, begin=begin
            )
            plan.update(decisions)
            atomic_write_json(out / "build.json", plan)
            return
        # resuming: the shared parts were made by the interrupted run
        self.tokenizer = Tokenizer(tok_path)
        if self.tokenizer.sha256 != plan["tokenizer_sha256"]:
            raise ValueError(f"{tok_path}: changed since this build started; delete {out} and build again")
        self.static = load_static(out / "static", self.tokenizer)

    # -- streaming the corpus into shards ----------------------------------------------------------
    def run(self, plan: dict) -> dict:
        cfg = self.cfg
        dense_on = self.manifest["dense"]["enabled"] if self.manifest else plan["dense"]
        dense_model = self._dense_for_shards(dense_on)
        first, doc_base = plan["first_shard"], (self.manifest["counts"]["docs"] if self.manifest else 0)
        done = self._finished_shards(first)
        # documents read from the corpus so far, skipped ones included (older shards lack the field)
        skip_docs = done[-1].get("docs_read", sum(s["docs"] for s in done)) if done else 0
        if self.resumed:
            self._say_resuming(plan, done, skip_docs)
        present = self._present_docs()
        reader = CorpusReader(self.corpus, max_doc_chars=cfg.max_doc_chars)
        progress = bar(None, f"index {self.corpus.name}", self.quiet, unit="tok")
        progress.update(sum(s["tokens"] for s in done))
        buffer, shard_no = ShardBuffer(cfg.chunk_len), first + len(done)
        doc_start = doc_base + sum(s["docs"] for s in done)
        started = time.time()
        for start, batch in self._batches(reader, skip_docs):
            digests = text_digests([d.text for d in batch])
            fresh = ~present.contains(digests) if present is not None else np.ones(len(batch), bool)
            for j in np.flatnonzero(~fresh):
                reader.report.warn(DUPLICATE, f"{batch[j].source}:{batch[j].line or 0}")
            keep = np.flatnonzero(fresh)
            ids = self.tokenizer.encode_batch([batch[j].text for j in keep], threads=cfg.threads)
            for j, toks in zip(keep, ids, strict=True):
                doc = batch[j]
                if not toks:
                    reader.report.warn("no tokens (skipped)", f"{doc.source}:{doc.line or 0}")
                    continue
                buffer.add(doc, toks, self.tokenizer, digests[j])
                progress.update(len(toks))
                if buffer.num_chunks >= cfg.shard_chunks:
                    done.append(
                        self._close(progress, buffer, shard_no, doc_start, dense_model, start + int(j) + 1)
                    )
                    doc_start += len(buffer.docs)
                    buffer, shard_no = ShardBuffer(cfg.chunk_len), shard_no + 1
        if buffer.docs:
            done.append(
                self._close(progress, buffer, shard_no, doc_start, dense_model, reader.report.documents)
            )
        done = self._settle(done)
        progress.close()
        if not done and not self.manifest:
            raise ValueError(
                f"{self.corpus}: no documents with text to index ({reader.report.total_warnings} problems: "
                f"{'; '.join(reader.report.examples[:3])})"
            )
        expansion = self._expansion_table(done)
        return self._write_manifest(plan, done, reader.report.to_dict(), time.time() - started, expansion)

    def _dense_for_shards(self, dense_on: bool):
        """What `_close` hands each shard for its dense tier: the loaded model here (None: no tier)."""
        if not dense_on:
            return None
        from index.embedders import load_dense

        with phase(f"loading the dense model {self.dense_id()}", self.quiet):
            return load_dense(self.dense_id())

    def _settle(self, done: list) -> list[dict]:
        """The shards' metadata once every shard is written (here each `_close` wrote its shard)."""
        return done

    def _expansion_table(self, new_shards: list[dict]) -> dict:
        """The expansion table phase (index/expansion_table.py), after the shards and before the
        manifest: the words of every shard, old and new, embedded once here instead of on the first
        query; an append embeds only the new ones. Resumable (blocks) and atomic like a shard."""
        from index.expansion_table import write_table

        old = self.manifest
        names = [s["name"] for s in (old["shards"] if old else [])] + [s["name"] for s in new_shards]
        return write_table(
            self.out,
            len(old["corpora"]) if old else 0,
            [self.out / "shards" / n for n in names],
            self.dense_id(),
            old.get("expansion") if old else None,
            quiet=self.quiet,
        )

    def _say_resuming(self, plan: dict, done: list[dict], skip_docs: int) -> None:
        """One line saying that a build resumes, and how much of it was done."""
        what = "append" if self.append else "build"
        est = plan.get("est_chunks")  # an estimate from the sample (new builds only)
        of = f" of about {max(len(done), math.ceil(est / self.cfg.shard_chunks))}" if est else ""
        note(
            f"resuming the {what} in {self.out}: {len(done)}{of} shards done "
            f"({sum(s['docs'] for s in done):,} documents, {sum(s['tokens'] for s in done):,} tokens); "
            f"continuing after document {skip_docs:,} of {self.corpus.name}",
            self.quiet,
        )

    def _present_docs(self) -> DocDigests | None:
        """The digests of the documents already in the index an append adds to (None: no check)."""
        if not self.manifest or self.keep_duplicates or not self.manifest["shards"]:
            return None
        folders = [self.out / "shards" / s["name"] for s in self.manifest["shards"]]
        desc = f"documents already in the index: digests of {len(folders)} shards"
        with phase(desc, self.quiet, point="digests"):
            return DocDigests.of_shards(folders, self.tokenizer)

    def dense_id(self) -> str:
        return self.manifest["dense"]["model"] if self.manifest else self.cfg.dense_model

    def _finished_shards(self, first: int) -> list[dict]:
        done = []
        for n in range(first, 1 << 30):
            meta = read_shard_meta(self.out / "shards" / f"{n:06d}")
            if meta is None:
                break
            done.append(dict(meta, name=f"{n:06d}"))
        return done

    def _batches(self, reader: CorpusReader, skip_docs: int) -> Iterator[tuple[int, list[Document]]]:
        """(position in the corpus of the batch's first document, the batch), from document `skip_docs` on."""
        batch, chars, start = [], 0, skip_docs
        for i, doc in enumerate(reader):
            if i < skip_docs:
                continue
            batch.append(doc)
            chars += len(doc.text)
            if chars >= self.cfg.batch_chars:
                yield start, batch
                batch, chars, start = [], 0, i + 1
        if batch:
            yield start, batch

    def _close(
        self, progress, buffer: ShardBuffer, shard_no: int, doc_start: int, dense_model, docs_read
    ) -> dict:
        """Write the shard, naming each step on the progress bar (a big shard takes minutes)."""
        name = f"{shard_no:06d}"

        def status(step: str) -> None:
            progress.set_postfix_str(f"writing shard {name}: {step}")

        try:
            return self._write(buffer, name, doc_start, dense_model, docs_read, status)
        finally:
            progress.set_postfix_str("")
            _release_memory()

    def _write(self, buffer: ShardBuffer, name: str, doc_start: int, dense_model, docs_read, status) -> dict:
        meta = write_shard(
            self.out / "shards" / name,
            buffer,
            doc_start=doc_start,
            tokenizer=self.tokenizer,
            static=self.static,
            faiss_template=self.out / "faiss.template",
            bm25_params=self.bm25_params(),
            dense_model=dense_model,
            quiet=self.quiet,
            docs_read=docs_read,
            status=status,
        )
        return dict(meta, name=name)

    def bm25_params(self) -> dict:
        """The BM25 settings every shard is written with (index/bm25.py write_bm25)."""
        cfg = self.cfg
        return {
            "k1": cfg.bm25_k1,
            "b": cfg.bm25_b,
            "bigrams": cfg.bm25_bigrams,
            "compounds": cfg.bm25_compounds,
            "postings": cfg.bm25_postings,
        }

    def _write_manifest(
        self, plan: dict, new_shards: list[dict], report: dict, seconds: float, expansion: dict
    ) -> dict:
        from index.embedders import dense_model_sha
        from index.expansion_table import finish_table

        old = self.manifest
        shards = (old["shards"] if old else []) + [
            {
                "name": s["name"],
                "docs": s["docs"],
                "chunks": s["chunks"],
                "tokens": s["tokens"],
                "doc_start": s["doc_start"],
            }
            for s in new_shards
        ]
        static_meta = json.loads((self.out / "static" / "static.json").read_text())
        dense_on = old["dense"]["enabled"] if old else plan["dense"]
        dense_dim = None
        if dense_on:
            from index.embedders import load_dense

            dense_dim = int(load_dense(self.dense_id()).get_embedding_dimension())
        manifest = {
            "format": "retro-index",
            "format_version": FORMAT_VERSION,
            "chunk_len": self.cfg.chunk_len,
            "tokenizer": {
                "file": "tokenizer.model",
                "sha256": self.tokenizer.sha256,
                "vocab_size": self.tokenizer.vocab_size,
                "dtype": str(self.tokenizer.dtype),
            },
            "static": static_meta,
            "dense": {
                "enabled": bool(dense_on),
                "model": self.dense_id(),
                "dim": dense_dim,
                "sha256": dense_model_sha(self.dense_id()),
            },
            "faiss": old["faiss"]
            if old
            else {
                "factory": plan["faiss_factory"],
                "metric": "inner_product",
                "nprobe": self.cfg.nprobe,
                "template_sha256": sha256_file(self.out / "faiss.template"),
            },
            "bm25": old["bm25"]
            if old
            else {
                "k1": self.cfg.bm25_k1,
                "b": self.cfg.bm25_b,
                "method": "lucene",
                "bigrams": self.cfg.bm25_bigrams,
                "bigram_weight": self.cfg.bm25_bigram_weight,
                "compounds": self.cfg.bm25_compounds,
                "postings": self.cfg.bm25_postings,  # a shard's own files tell its layout (index/bm25.py)
                "terms": "lower-cased words, stop words dropped, Snowball stems; bigrams; hyphenated compounds whole (index/bm25.py)",
                "unit": "neighbour text: the chunk's words twice, its continuation's once",
                "idf": "global, summed over shards at query time",
            },
            # snapshot number: 0 when built, +1 for each append that adds shards (a server reloads on a change)
            "generation": (old.get("generation", 0) + bool(new_shards)) if old else 0,
            "counts": {
                "docs": sum(s["docs"] for s in shards),
                "tokens": sum(s["tokens"] for s in shards),
                "chunks": sum(s["chunks"] for s in shards),
            },
            "build_config": old["build_config"] if old else config_to_dict(self.cfg),
            "warnings": old.get("warnings", []) if old else plan.get("warnings", []),
            "corpora": (old["corpora"] if old else []) + [{"path": plan["corpus"], "input": report}],
            "shards": shards,
            "expansion": expansion,
        }
        # build.json names the manifest about to be written: a run killed between the two writes below
        # and the removal of build.json is then known to be finished (`finish_written`)
        plan["manifest_sha256"] = hashlib.sha256(json_text(manifest).encode("utf-8")).hexdigest()
        atomic_write_json(self.out / "build.json", plan)
        kill_point("manifest")
        atomic_write_json(self.out / "index.json", manifest)
        kill_point("manifest")
        atomic_write_json(
            self.out / f"build-log-{len(manifest['corpora']) - 1}.json",
            {
                "run": run_info(),
                "stream_s": round(seconds, 3),
                "prepare_s": plan.get("timings"),
                "corpus": plan["corpus"],
                "config": config_to_dict(self.cfg),
                "input": report,
            },
        )
        (self.out / "build.json").unlink()
        finish_table(self.out, expansion)  # older tables
        return manifest


def _warn_ignored_on_append(cfg: BuildConfig, built_with: dict) -> None:
    """Say which settings an append ignores: the index's chunking, tokenizer and tiers stay as built.
    A field counts as set when it differs from the default (a default given explicitly goes unseen)."""
    default = BuildConfig()
    ignored = [
        f"{f.name}={getattr(cfg, f.name)!r} (the index has {built_with.get(f.name)!r})"
        for f in dataclasses.fields(BuildConfig)
        if f.name not in (*_PER_RUN_FIELDS, "tokenizer")
        and getattr(cfg, f.name) != getattr(default, f.name)
        and getattr(cfg, f.name) != built_with.get(f.name)
    ]
    if ignored:
        print(
            "warning: --append keeps the index's build settings (tokenizer, chunking, tiers); ignored: "
            + ", ".join(ignored),
            file=sys.stderr,
        )


def finished_build(out: str | os.PathLike, corpus: str | os.PathLike, cfg: BuildConfig) -> dict | None:
    """The manifest when `out` already holds the finished build of exactly `corpus` with `cfg` (one
    corpus, no appends, the same resolved config), else None: rerunning a build is a no-op, like make."""
    path = Path(out) / "index.json"
    if not path.is_file() or (Path(out) / "build.json").exists():
        return None
    manifest = json.loads(path.read_text())
    corpora = manifest.get("corpora", [])
    same_corpus = len(corpora) == 1 and corpora[0].get("path") == str(Path(corpus).resolve())
    return manifest if same_corpus and manifest.get("build_config") == config_to_dict(cfg) else None


def build_index(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    config: BuildConfig | None = None,
    *,
    append: bool = False,
    quiet: bool = False,
    keep_duplicates: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
) -> dict:
    """Build (or resume, or append to) the index at `out` from the file or folder `corpus`.

    engine "ray": each shard is written by a Ray task (index/ray_build.py) on the cluster at
    `ray_address` (None: the running Ray session, or a new local one); the index comes out the same,
    byte for byte.

    Returns the manifest (index.json) as a dict. A finished build of the same corpus and config is
    left as it is (`finished_build`). An append skips documents whose text the index already holds
    (counted as input warnings) unless `keep_duplicates`. Raises FileNotFoundError / FileExistsError /
    ValueError with a one-line message for bad input.
    """
    cfg = config or BuildConfig()
    cfg.validate()
    from util.ray_cluster import check_engine

    check_engine(engine, ray_address)
    if not Path(corpus).exists():
        raise FileNotFoundError(f"{corpus}: no such file or directory")
    if not append and (done := finished_build(out, corpus, cfg)) is not None:
        if not quiet:
            print(f"{out}: complete (same corpus and config); nothing to do", file=sys.stderr)
        return done
    manifest_path = Path(out) / "index.json"
    if append and manifest_path.is_file():  # chunking, tiers and scoring must match the shards already there
        built_with = json.loads(manifest_path.read_text())["build_config"]
        built_with.setdefault("bm25_compounds", False)  # an index from before compound terms
        built_with.setdefault("bm25_postings", "csc")  # an index from before packed postings
        per_run = {k: getattr(cfg, k) for k in _PER_RUN_FIELDS}
        _warn_ignored_on_append(cfg, built_with)
        cfg = dataclasses.replace(BuildConfig(**built_with), **per_run, tokenizer=cfg.tokenizer)
    if engine == "ray":
        from index.ray_build import RayBuilder

        builder = RayBuilder(corpus, Path(out), cfg, append, quiet, keep_duplicates, address=ray_address)
    else:
        builder = _Builder(corpus, Path(out), cfg, append, quiet, keep_duplicates)
    if (done := builder.finish_written()) is not None:
        return done
    plan = builder.plan()
    builder.prepare(plan)
    return builder.run(plan)
