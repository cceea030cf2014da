"""The needle-in-a-haystack runner behind `retro eval niah` and `retro demo`.

For every cell (haystack kind x task x size x needle count, repeated over `trials`) it writes the
haystack, builds an index over it (or reuses one), asks every question through a retriever, and
appends one line per question to samples.jsonl. At the end it summarises every cell into
results.json, prints a markdown table and draws the heatmaps and the recall-vs-tokens plot.

Layout of an output folder:
    config.yaml  results.json  samples.jsonl  heatmap_*.png  recall_vs_tokens.png
    tokenizers/<haystack>-<task>.model        tokenizer trained on the haystack's filler (size calibration)
    cells/<cell>/corpus.jsonl needles.jsonl distractors.jsonl haystack.json index/
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evals import report, scoring
from evals.haystack import HAYSTACK_KINDS, HaystackConfig, write_haystack
from evals.needles import TASKS, NeedleConfig, Sample, answer_span, distractor_stream, make_needles
from evals.retrievers import check_result, check_spec, make_retriever
from pipelines.answer import ask, load_reader
from pipelines.results import SearchResult

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kKmMbBgG]?)\s*$")
_MULT = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}


def parse_size(text: str) -> int:
    """'128K' -> 128000, '1M' -> 1000000, '1.5M', '10m', '2e6', '1B' (decimal multiples)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(
            f"bad size {text!r}: expected a number with an optional K, M or B suffix (e.g. 128K, 1M)"
        )
    return int(round(float(m.group(1)) * _MULT[m.group(2).lower()]))


def parse_list(text: str, what: str, conv=str) -> tuple:
    """'a,b,c' -> (conv(a), conv(b), conv(c)); empty items are errors."""
    items = [x.strip() for x in str(text).split(",")]
    if not all(items):
        raise ValueError(f"bad {what} list {text!r}")
    try:
        return tuple(conv(x) for x in items)
    except ValueError as e:
        raise ValueError(f"bad {what} {text!r}: {e}") from None


def parse_haystack(spec: str) -> tuple[str, str | None, str]:
    """'needles' -> ('needles', None, 'needles'); 'text:DIR' -> ('text', DIR, 'text-<dirname>')."""
    kind, _, source = spec.partition(":")
    if kind not in HAYSTACK_KINDS:
        raise ValueError(f"unknown haystack {spec!r} (known: noise, words, needles, text:DIR)")
    if kind == "text":
        if not source:
            raise ValueError("text haystack needs a folder or .jsonl file: --haystack text:DIR")
        if not Path(source).exists():
            raise ValueError(f"text haystack: {source}: no such file or folder")
        return kind, source, "text-" + re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).resolve().name)
    if source:
        raise ValueError(f"haystack {kind!r} takes no source (got {spec!r})")
    return kind, None, kind


@dataclass(frozen=True)
class NiahConfig:
    haystacks: tuple[str, ...] = ("needles",)  # noise | words | needles | text:DIR
    tokens: tuple[int, ...] = (128_000, 1_000_000)  # haystack sizes in tokens of the index tokenizer
    needles: tuple[int, ...] = (1, 8, 100)  # needles per haystack (chains for multihop)
    tasks: tuple[str, ...] = (
        "single",
    )  # single | multikey | multivalue | multiquery | multihop | nonliteral
    key_type: str = "word"  # needle keys: word | number | uuid
    value_type: str = "number"  # needle values: word | number | uuid
    depths: int = 11  # depth buckets over the haystack (heatmap rows)
    trials: int = (
        0  # haystacks per cell; 0 = enough for every depth bucket: ceil(depths/needles), <= max_trials
    )
    max_trials: int = 11  # cap for the automatic number of trials
    seed: int = 0  # everything random derives from it
    k: int = 10  # neighbours kept at the final stage (recall@k)
    stage_depth: int = 100  # candidates each cheap stage keeps
    retriever: str = (
        "cheap"  # cheap | bm25 | static | dense | cascade | MODULE:FACTORY; `a+b` asks each (one index)
    )
    max_samples: int = 0  # questions asked per cell (the first ones); 0 = all
    chars_per_token: float = (
        0.0  # 0 = calibrate with a tokenizer trained on the haystack (used by the index too)
    )
    straddle_fraction: float = 0.5  # share of needles centred on a chunk boundary
    distractor_every_chars: int = 2000  # needles haystack: one distractor per this many characters
    doc_chars: int = 8000  # synthetic documents: mean length in characters
    reader: str = "shipped"  # who answers: "shipped" (the reader in retro/assets/reader), a checkpoint folder, or "none"
    reader_mode: str = "constrained"  # reader decoding: constrained (copy spans of the neighbours) | free
    form: int = 0  # twohop: surface form of the entity facts (0 or 1; pick settings on one, report the other)
    hops: int = 0  # reading hops per question; 0 = what the task needs (`hops_for`)
    index: str | None = None  # reuse this index (exactly one cell) instead of building one
    build: tuple[str, ...] = ()  # index BuildConfig overrides, key=value (dense is off unless set here)

    def check(self) -> NiahConfig:
        """Validate every field; raise ValueError with a one-line message."""
        for h in self.haystacks:
            parse_haystack(h)
        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r} (known: {', '.join(TASKS)})")
        if not self.tokens or min(self.tokens) < 1000:
            raise ValueError("--tokens: every size must be at least 1K")
        if not self.needles or min(self.needles) < 1:
            raise ValueError("--needles: every count must be >= 1")
        if self.depths < 1 or self.k < 1 or self.stage_depth < 1 or self.trials < 0 or self.max_samples < 0:
            raise ValueError("depths, k and stage_depth must be >= 1, trials and max_samples >= 0")
        for spec in self.retrievers():
            check_spec(spec)  # a typo fails here, not after the haystacks are built
        if self.reader_mode not in ("constrained", "free"):
            raise ValueError(f"reader_mode must be constrained or free, got {self.reader_mode!r}")
        if self.hops < 0:
            raise ValueError(f"hops must be >= 0 (0 = what the task needs), got {self.hops}")
        NeedleConfig(key_type=self.key_type, value_type=self.value_type).check()
        if self.index and len(self.haystacks) * len(self.tasks) * len(self.tokens) * len(self.needles) != 1:
            raise ValueError(
                "--index reuses one index: give exactly one haystack, task, size and needle count"
            )
        if self.index and not Path(self.index).exists():
            raise ValueError(f"--index {self.index}: no such index folder")
        return self

    def retrievers(self) -> tuple[str, ...]:
        """The retriever specs of `retriever` ('bm25+cascade' -> ('bm25', 'cascade')), in order."""
        specs = tuple(x.strip() for x in self.retriever.split("+"))
        if not all(specs) or len(set(specs)) != len(specs):
            raise ValueError(f"bad --retriever {self.retriever!r}: empty or repeated item in a '+' list")
        return specs

    def trials_for(self, n: int) -> int:
        """Haystacks generated for a cell with `n` needles."""
        return self.trials or max(1, min(self.max_trials, math.ceil(self.depths / n)))


class IndexBackend:
    """Builds and opens indexes with the project's `index` package; trains calibration tokenizers."""

    def tokenizer(self, texts: list[str], path: Path) -> Path:
        """Train a sentencepiece model on `texts` the way the index does; return its path."""
        from index.tokenizer import train_tokenizer

        return train_tokenizer(texts, path)

    def chars_per_token(self, tokenizer: Path, texts: list[str]) -> float:
        """Characters per token of `texts` under `tokenizer`."""
        from index.tokenizer import Tokenizer

        tok = Tokenizer(tokenizer)
        return sum(map(len, texts)) / max(1, sum(len(ids) for ids in tok.encode_batch(texts)))

    def build(
        self, corpus: Path, out: Path, overrides: tuple[str, ...], tokenizer: Path | None, quiet: bool
    ) -> dict:
        """Build an index over `corpus` into `out` (dense off unless overridden)."""
        from index.build import BuildConfig, build_index
        from util.configs import resolve_config

        # the dense tier is far too slow for eval haystacks on CPU: off unless overridden
        base: dict = {"dense": "off"}
        if tokenizer is not None:
            base["tokenizer"] = str(tokenizer)
        cfg = resolve_config(
            BuildConfig, overrides=list(overrides), base=dataclasses.replace(BuildConfig(), **base)
        )
        return build_index(corpus, out, cfg, quiet=quiet)

    def open(self, path: Path):
        """Open a built index."""
        from index import Index

        return Index.open(path)


def niah_reader(spec: str):
    """The reader a NiahConfig names: None for "none", else `retro.reader.Reader` ("shipped" = the
    checkpoint in the repository)."""
    return None if spec == "none" else load_reader(None if spec == "shipped" else spec)


def hops_for(sample: Sample, hops: int) -> int:
    """Reading hops for a sample: `hops`, or when 0 what its task needs (one per link of a variable
    chain plus one, two for two-hop entities, one otherwise)."""
    if hops:
        return hops
    if sample.task == "multihop":
        return len(sample.meta["chain"]) + 1
    return 2 if sample.task == "twohop" else 1


def _ask(
    retriever, reader, sample: Sample, k: int, hops: int, mode: str
) -> tuple[SearchResult, dict, list[dict]]:
    """Ask one sample the way a user's `retro ask` does: one search without a reader; with one,
    retrieve -> read -> cite over `hops_for(sample, hops)` hops (pipelines/answer.py). Returns the
    typed result, the flat view the scorer reads (every hop's neighbours count as found) and the
    rounds: per hop its query and the ids of each ranked list."""
    if reader is None:
        res = retriever.search(sample.question, k)
    else:
        res = ask(retriever, reader, sample.question, k, hops=hops_for(sample, hops), mode=mode)
    rounds = [{"query": hop.query, "stages": _hop_stages(hop)} for hop in res.hops]
    return res, check_result(res, k * len(res.hops)), rounds


def _hop_stages(hop) -> dict[str, list[int]]:
    """Ids of each ranked list of one hop, best first."""
    return {name: [int(i) for i in hop.ranked(name).ids.tolist() if i >= 0] for name in hop.list_names()}


def _answer_text(answer) -> str | None:
    """The text the answer metric reads: the reader's answer text (None without a reader or when it abstained)."""
    return None if answer is None else answer.text


def _best_rank(gold: set[int], rounds: list[dict], stage: str) -> int | None:
    """The needle's best rank in `stage` over the rounds (each hop's own list, not their concatenation)."""
    ranks = [scoring.first_rank(gold, r["stages"].get(stage, [])) for r in rounds]
    return min((x for x in ranks if x is not None), default=None)


def _score(
    res: dict, sample: Sample, needles: dict, located: dict, k: int, rounds: list[dict] | None = None
) -> tuple[list[dict], list[dict]]:
    """Per-needle found flags and stage ranks; with several `rounds` (multihop), a stage rank is the
    best over the rounds' own lists. Every rank is 1-based, as in `retro ask`'s output (None: missed)."""
    stage_rank = {s: {i: r for r, i in enumerate(ids, start=1)} for s, ids in res["stages"].items()}
    final = set(res["final"])
    out = []
    for nid in sample.needle_ids:
        nd, loc = needles[nid], located[nid]
        gold = set(loc["gold_chunks"])
        whole = set(loc.get("whole_chunks", gold))
        if rounds and len(rounds) > 1:
            ranks = {s: _best_rank(gold, rounds, s) for s in res["stages"]}
        else:
            ranks = {s: scoring.first_rank(gold, ids) for s, ids in res["stages"].items()}
        out.append(
            {
                "needle_id": nid,
                "text": nd["text"],
                "doc_id": nd["doc_id"],
                "offset": nd["offset"],
                "depth": nd["depth"],
                "depth_bucket": nd["depth_bucket"],
                "straddle_planned": nd["straddle"],
                "straddles": loc["straddles"],
                "gold_chunks": loc["gold_chunks"],
                "whole_chunks": loc.get("whole_chunks", loc["gold_chunks"]),
                "gold_method": loc["method"],
                "found": bool(gold & final),
                "found_whole": bool(whole & final),
                "final_rank": scoring.first_rank(gold, res["final"]),
                "found_by_stage": {s: r is not None for s, r in ranks.items()},
                "stage_ranks": ranks,
            }
        )
    retrieved = [
        {"id": i, "rank": r, "stage_ranks": {s: m.get(i) for s, m in stage_rank.items()}}
        for r, i in enumerate(res["final"], start=1)
    ]
    return out, retrieved


def _progress(iterable, quiet: bool, **kw):
    from tqdm import tqdm

    return tqdm(iterable, disable=quiet, dynamic_ncols=True, file=sys.stderr, **kw)


def _filler_sample(hcfg: HaystackConfig) -> list[str]:
    """The first ~4M characters of the haystack's filler documents (the calibration sample)."""
    from evals.haystack import _docs

    docs, _ = _docs(hcfg)
    texts, total = [], 0
    for _, text in docs:
        texts.append(text)
        total += len(text)
        if total >= 4_000_000:
            break
    return texts


def _index_chars_per_token(cfg: NiahConfig, hcfg: HaystackConfig, backend) -> float:
    """Chars/token for a reused `--index`: measured with its tokenizer.model on the same filler sample
    `_calibrate` measures, so the regenerated haystack is the one that index was built over (a
    haystack made at another rate would not match it); 0 (= 4.0) when the index has no tokenizer file."""
    tok = Path(cfg.index) / "tokenizer.model"
    return backend.chars_per_token(tok, _filler_sample(hcfg)[:50]) if tok.exists() else 0.0


def _calibrate(cfg: NiahConfig, hcfg: HaystackConfig, ncfg: NeedleConfig, backend, out: Path, name: str):
    """Train a tokenizer on the haystack's filler (+ needle-form sentences) and measure chars/token."""
    texts = _filler_sample(hcfg)
    ns = make_needles(ncfg, max(cfg.needles), cfg.seed)
    forms = [nd.text for nd in ns.needles] + list(
        itertools.islice(distractor_stream(ncfg, ns.true_keys, cfg.seed), 2000)
    )
    tok = backend.tokenizer(texts + forms, out / "tokenizers" / f"{name}.model")
    return tok, backend.chars_per_token(tok, texts[:50])


def run_niah(
    cfg: NiahConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    backend=None,
    echo=print,
) -> dict:
    """Run every cell of `cfg` into `out_dir`; return the results.json dict (also written there)."""
    from util.configs import write_resolved_config
    from util.runinfo import atomic_write_json, run_info

    cfg.check()
    reader = niah_reader(cfg.reader)  # a bad --reader fails here, before any output is written
    if reader is not None:
        reader.warm(cfg.k)  # compilation stays out of every sample's latency
    backend = backend or IndexBackend()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume and (out / "config.yaml").exists():
        import yaml

        from util.configs import config_to_dict

        before, now = yaml.safe_load((out / "config.yaml").read_text()) or {}, config_to_dict(cfg)
        changed = sorted(k for k in now if before.get(k) != now[k])
        if changed:
            raise ValueError(
                f"--resume: {out}/config.yaml differs in {', '.join(changed)}; use a new --out or drop --resume"
            )
    write_resolved_config(cfg, out)
    samples_path = out / "samples.jsonl"
    done: set[str] = set()
    if resume and samples_path.exists():
        for line in samples_path.read_text(encoding="utf-8").splitlines():
            try:
                done.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut short by an interruption: that sample runs again
        samples_path.write_text(
            "".join(ln + "\n" for ln in samples_path.read_text(encoding="utf-8").splitlines() if _valid(ln)),
            encoding="utf-8",
        )
    elif samples_path.exists():
        samples_path.unlink()

    cells_info, wanted_cells = [], set()
    specs = cfg.retrievers()
    multi = len(specs) > 1
    t_start = time.perf_counter()
    with open(samples_path, "a", encoding="utf-8") as sink:
        for hay, task in itertools.product(cfg.haystacks, cfg.tasks):
            kind, source, hname = parse_haystack(hay)
            ncfg = NeedleConfig(
                task=task, key_type=cfg.key_type, value_type=cfg.value_type, form=cfg.form
            ).check()
            base = HaystackConfig(
                kind=kind,
                source=source,
                tokens=max(cfg.tokens),
                depths=cfg.depths,
                straddle_fraction=cfg.straddle_fraction,
                doc_chars=cfg.doc_chars,
                distractor_every_chars=cfg.distractor_every_chars,
                seed=cfg.seed,
                chars_per_token=cfg.chars_per_token or 4.0,
            )
            tok_path, cpt = None, cfg.chars_per_token
            for tokens, n in itertools.product(cfg.tokens, cfg.needles):
                for trial in range(cfg.trials_for(n)):
                    cname = f"{hname}-{task}-{report.fmt_tokens(tokens)}-n{n}-t{trial}"
                    wanted_cells.add(cname)
                    seed = cfg.seed + 7919 * trial
                    needle_set = make_needles(ncfg, n, seed)
                    asked = needle_set.samples[: cfg.max_samples or None]
                    keys = [_key(cname, spec, s, multi) for spec in specs for s in asked]
                    if all(key in done for key in keys):
                        continue
                    if not cpt and cfg.index is None:
                        tok_path, cpt = _calibrate(cfg, base, ncfg, backend, out, f"{hname}-{task}")
                    elif not cpt:  # reused index: its own tokenizer gives the sizes it was built with
                        cpt = _index_chars_per_token(cfg, base, backend)
                    hcfg = dataclasses.replace(
                        base, tokens=tokens, trial=trial, seed=seed, chars_per_token=cpt or 4.0
                    )
                    cdir = out / "cells" / cname
                    info = _cell(cfg, hcfg, ncfg, needle_set, cdir, backend, tok_path, resume, quiet)
                    info["cell"] = cname
                    cells_info.append(info)
                    idx = backend.open(Path(cfg.index) if cfg.index else cdir / "index")
                    locator = scoring.NeedleLocator(idx)
                    needles = {r["needle_id"]: r for r in _read_jsonl(cdir / "needles.jsonl")}
                    located: dict[str, dict] = {}
                    info["query_seconds"] = {}
                    for spec in specs:
                        todo = [
                            (s, _key(cname, spec, s, multi))
                            for s in asked
                            if _key(cname, spec, s, multi) not in done
                        ]
                        if not todo:
                            continue
                        retriever = make_retriever(spec, idx, cfg.stage_depth)
                        cell_meta = {
                            "haystack": hname,
                            "task": task,
                            "tokens": tokens,
                            "needles": n,
                            "trial": trial,
                            "retriever": spec,
                            "name": cname,
                        }
                        t_q = time.perf_counter()
                        for s, key in _progress(todo, quiet, desc=f"ask {cname} {spec}", unit="q"):
                            for nid in s.needle_ids:
                                if nid not in located:
                                    nd = needles[nid]
                                    located[nid] = locator.locate(
                                        nd["doc_index"],
                                        nd["doc_id"],
                                        nd["offset"],
                                        nd["text"],
                                        answer_span(nd["task"], nd["key"], nd["value"]),
                                    )
                            result, res, rounds = _ask(retriever, reader, s, cfg.k, cfg.hops, cfg.reader_mode)
                            scored, retrieved = _score(res, s, needles, located, cfg.k, rounds)
                            rec = {
                                "key": key,
                                "cell": cell_meta,
                                "sample_id": s.sample_id,
                                "task": s.task,
                                "question": s.question,
                                "answers": list(s.answers),
                                "k": cfg.k,
                                "context_tokens": int(idx.num_tokens),
                                "context_chunks": int(idx.num_chunks),
                                "needles": scored,
                                "found": all(nd["found"] for nd in scored),
                                "n_found": sum(nd["found"] for nd in scored),
                                "retrieved": retrieved,
                                "answer": None if res["answer"] is None else res["answer"].to_dict(),
                                "answer_recall": None
                                if reader is None
                                else scoring.answer_recall(_answer_text(res["answer"]), s.answers) or 0.0,
                                "abstained": None if reader is None else res["answer"].abstained,
                                "latency_ms": {st: round(v, 3) for st, v in res["latency_ms"].items()},
                                "warnings": info["warnings"],
                                # the typed result, as `retro ask --json` prints it
                                "search": result.ask_dict(s.sample_id),
                                "hop_queries": [r["query"] for r in rounds],
                            }
                            sink.write(json.dumps(rec) + "\n")
                            sink.flush()
                        info["query_seconds"][spec] = round(time.perf_counter() - t_q, 3)

    records = [r for r in _read_jsonl(samples_path) if _cell_name(r) in wanted_cells]
    rows = scoring.summarize(records)
    results = {
        "config": dataclasses.asdict(cfg),
        "run": run_info(),
        "rows": rows,
        "cells": cells_info,
        "seconds": round(time.perf_counter() - t_start, 3),
        "notes": [
            "sizes: characters = tokens x chars_per_token (calibrated on the haystack's own tokenizer "
            "unless chars_per_token is set); context_tokens are counted by the index",
            "answer_recall is null until the retriever returns an answer (no reader yet)",
        ],
    }
    atomic_write_json(out / "results.json", results)
    if rows:
        report.heatmaps(rows, out, cfg.depths)
        report.recall_vs_tokens(rows, out)
    echo(report.markdown_table(rows))
    for w in sorted({w for r in rows for w in r["warnings"]}):
        echo(f"warning: {w}")
    return results


def _valid(line: str) -> bool:
    try:
        return "key" in json.loads(line)
    except json.JSONDecodeError:
        return False


def _key(cname: str, spec: str, sample: Sample, multi: bool) -> str:
    """A sample's resume key: `cell/sample` (one retriever) or `cell/retriever/sample` (several)."""
    return f"{cname}/{spec}/{sample.sample_id}" if multi else f"{cname}/{sample.sample_id}"


def _cell_name(rec: dict) -> str:
    return rec["cell"].get("name") or rec["key"].split("/", 1)[0]


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _cell(
    cfg: NiahConfig,
    hcfg: HaystackConfig,
    ncfg: NeedleConfig,
    needle_set,
    cdir: Path,
    backend,
    tok_path,
    resume: bool,
    quiet: bool,
) -> dict:
    """Write the cell's haystack and build its index (both reused under --resume when complete)."""
    stamp = {"haystack": dataclasses.asdict(hcfg), "needles": dataclasses.asdict(ncfg)}
    hjson, stamp_path = cdir / "haystack.json", cdir / "cell.json"
    fresh = not (
        resume
        and hjson.exists()
        and stamp_path.exists()
        and (cdir / "corpus.jsonl").exists()
        and json.loads(stamp_path.read_text()) == stamp
    )
    if fresh:
        if cdir.exists():
            shutil.rmtree(cdir)
        cdir.mkdir(parents=True)
        bar = _progress(
            None, quiet, desc=f"haystack {cdir.name}", unit="char", unit_scale=True, total=hcfg.target_chars
        )
        info = write_haystack(hcfg, needle_set, cdir, ncfg, progress=bar.update)
        bar.close()
        stamp_path.write_text(json.dumps(stamp, indent=2, sort_keys=True))
    else:
        info = json.loads(hjson.read_text())
    info = dict(info)
    if cfg.index is None:
        t = time.perf_counter()
        if fresh or not (cdir / "index" / "index.json").exists():
            backend.build(cdir / "corpus.jsonl", cdir / "index", cfg.build, tok_path, quiet)
        info["build_seconds"] = round(time.perf_counter() - t, 3)
    return info
