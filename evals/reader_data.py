"""Training and held-out data for the reader: retrieval QA over real BM25 neighbours of generated haystacks.

Each *haystack spec* (task, key/value types, seed) becomes a `needles` haystack (evals/haystack.py:
random-word filler plus a distractor needle every ~2,000 characters, so BM25 returns look-alike needles
with other keys), an index over it (index/, dense tier off) and one *QA record* per question:

    {"id", "task", "question", "answers": [str], "evidence": [str],
     "neighbours": [top-N BM25 neighbour texts (chunk + continuation)],
     "gold": [[evidence indices found in neighbour i] for each neighbour],
     "extra": [gold neighbour texts the top-N missed (found by searching the evidence string)]}

`answers` are what the reader must generate, in order (multivalue / multiquery: several, separated by
the reader's <next> token); `evidence[i]` is the string whose presence in a neighbour makes it a gold
neighbour for answers[i] (`{key} is: {value}` for key/value needles).

Chains (variable chains and two-hop entity questions) are followed one link per reader call, as
`pipelines.answer.ask` follows them: hop h searches *and reads* `hop_question(question, [bridge])`, the
question followed by the latest bridge (`targets[h-1]`), and its target is what that bridge's link
resolves to (`targets[h]`: `VAR D` for `VAR E = VAR D`, ..., the number at the chain's start; the bridge
person, then the answer, for two-hop), with `evidence` = that one link. Hop 0 reads the question alone.
One more record per chain asks with the final answer as the bridge: no link starts there, so its target
is <abstain> (the last answer stands). `links` / `targets` / `final` keep the whole chain for scoring.
Two-hop training uses surface forms 0, 2 and 3; form 1 (evals/entities.py) is held out.

Seeds: training haystacks use 1000+, held-out 2000+ (reported), dev 3000+ (settings are chosen on it,
e.g. the reader's abstention threshold); the evals use 0-3, never seen here.
`python -m evals.reader_data --out data/reader --split train` (about 3 minutes for the train split on
2 cores, mostly index builds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from evals.haystack import HaystackConfig, write_haystack
from evals.needles import NeedleConfig, make_needles
from pipelines.answer import hop_question

TOP_N = 20  # BM25 neighbours stored per question (training samples draw from them; evaluation uses 10)


@dataclasses.dataclass(frozen=True)
class HaySpec:
    """One generated haystack and the questions asked over it."""

    name: str  # folder name under the output
    needles: NeedleConfig  # task and key/value types
    n: int  # needles (chains for multihop)
    tokens: int  # haystack size in (approximate) tokens
    seed: int  # haystack + needle seed (1000+ train, 2000+ held out)


def _specs(split: str) -> list[HaySpec]:
    """The haystacks of a split: every task x key type x value type the evals use, a few seeds each."""
    base = {"train": 1000, "heldout": 2000, "dev": 3000}[split]
    reps = 2 if split == "train" else 1
    tokens = 120_000 if split == "train" else 250_000
    out: list[HaySpec] = []
    s = base
    for rep in range(reps):
        for kt in ("word", "number", "uuid"):
            for vt in ("word", "number", "uuid"):
                out.append(HaySpec(f"single-{kt}-{vt}-{s}", NeedleConfig("single", kt, vt), 50, tokens, s))
                s += 1
        for vt in ("word", "number", "uuid"):
            kt = ("word", "number", "uuid")[rep % 3]
            out.append(HaySpec(f"multikey-{kt}-{vt}-{s}", NeedleConfig("multikey", kt, vt), 40, tokens, s))
            s += 1
            vpk = 2 + (s % 3)
            out.append(
                HaySpec(
                    f"multivalue-{kt}-{vt}-{s}",
                    NeedleConfig("multivalue", kt, vt, values_per_key=vpk),
                    48,
                    tokens,
                    s,
                )
            )
            s += 1
            qpq = 2 + (s % 3)
            out.append(
                HaySpec(
                    f"multiquery-{kt}-{vt}-{s}",
                    NeedleConfig("multiquery", "word" if kt == "uuid" else kt, vt, queries_per_question=qpq),
                    48,
                    tokens,
                    s,
                )
            )
            s += 1
        for _ in range(2):
            out.append(HaySpec(f"multihop-{s}", NeedleConfig("multihop", hops=4), 24, tokens, s))
            s += 1
    if split == "train":  # more chains (the hop-by-hop targets) and multi-part answers, seeds 1044+
        for i in range(4):
            out.append(HaySpec(f"multihop-{s}", NeedleConfig("multihop", hops=2 + i % 3), 24, tokens, s))
            s += 1
        for vt in ("word", "number", "uuid"):
            nc = NeedleConfig("multivalue", "word", vt, values_per_key=2 + s % 3)
            out.append(HaySpec(f"multivalue-word-{vt}-{s}", nc, 48, tokens, s))
            s += 1
            nc = NeedleConfig("multiquery", "word", vt, queries_per_question=2 + s % 3)
            out.append(HaySpec(f"multiquery-word-{vt}-{s}", nc, 48, tokens, s))
            s += 1
    return out


def twohop_specs(split: str) -> list[HaySpec]:
    """Two-hop entity haystacks: train on surface forms 0, 2 and 3 (2 and 3 are training-only wording
    variety: six hand-written relations, and 60 composed ones); held out: form 0 and the unseen form 1."""
    if split == "train":
        forms = (0, 0, 0, 0, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3)
        base, tokens = 1100, 120_000
    elif split == "dev":  # for choosing settings (the abstention threshold); never reported
        forms = (0, 0)
        base, tokens = 3100, 250_000
    else:
        forms = (0, 1, 1)
        base, tokens = 2100, 250_000
    return [
        HaySpec(f"twohop-f{f}-{base + i}", NeedleConfig("twohop", form=f), 40, tokens, base + i)
        for i, f in enumerate(forms)
    ]


def _chain(
    sid: str, task: str, question: str, final: str, links: list[str], targets: list[str]
) -> list[dict]:
    """One record per hop of a chain (see the module doc), plus the closing hop that must abstain."""
    n = len(links)
    return [
        {
            "id": f"{sid}-h{h}",
            "task": task,
            "question": hop_question(question, [targets[h - 1]] if h else []),
            "asked": question,
            "hop": h,
            "answers": [targets[h]] if h < n else [],
            "evidence": [links[h]] if h < n else [],
            "links": links,
            "targets": targets,
            "final": final,
        }
        for h in range(n + 1)
    ]


def _questions(ns) -> list[dict]:
    """(question, answers, evidence) per reader call; chains give one record per hop."""
    by_id = {nd.needle_id: nd for nd in ns.needles}
    out = []
    for smp in ns.samples:
        if smp.task == "twohop":  # fact 1 names the bridge person, fact 2 the answer
            facts = [by_id[i].text.rstrip(".") for i in smp.needle_ids]
            targets = [smp.meta["bridge"], smp.answers[0]]
            out += _chain(smp.sample_id, "twohop", smp.question, smp.answers[0], facts, targets)
            continue
        if smp.task == "multihop":  # followed from the asked variable back to the number
            names = smp.meta["chain"][::-1]  # asked variable first
            targets = [f"VAR {b}" for b in names[1:]] + [smp.answers[0]]
            links = [f"VAR {a} = {t}" for a, t in zip(names, targets, strict=True)]
            out += _chain(smp.sample_id, "multihop", smp.question, smp.answers[0], links, targets)
            continue
        needles = [by_id[i] for i in smp.needle_ids]
        out.append(
            {
                "id": smp.sample_id,
                "task": smp.task,
                "question": smp.question,
                "answers": list(smp.answers),
                "evidence": [f"{nd.key} is: {nd.value}" for nd in needles],
            }
        )
    return out


def build_haystack(spec: HaySpec, work: Path, quiet: bool = True) -> list[dict]:
    """Write the haystack, index it, and return its QA records with BM25 neighbours."""
    from index import Index
    from index.build import BuildConfig, build_index

    hay = work / spec.name
    if hay.exists():
        shutil.rmtree(hay)
    ns = make_needles(spec.needles, spec.n, spec.seed)
    hcfg = HaystackConfig(kind="needles", tokens=spec.tokens, seed=spec.seed)
    write_haystack(hcfg, ns, hay / "hay", spec.needles)
    build_index(hay / "hay" / "corpus.jsonl", hay / "index", BuildConfig(dense="off"), quiet=quiet)
    idx = Index.open(hay / "index")
    records = []
    for q in _questions(ns):
        ids, _ = idx.search_bm25(q["question"], TOP_N)
        ids = [int(i) for i in np.asarray(ids).reshape(-1) if i >= 0]
        texts = idx.neighbour_text(ids) if ids else []
        gold = [[e for e, ev in enumerate(q["evidence"]) if ev in t] for t in texts]
        found = {e for g in gold for e in g}
        extra = []
        for e, ev in enumerate(q["evidence"]):
            if e in found:
                continue
            eids, _ = idx.search_bm25(ev, 5)
            etexts = idx.neighbour_text([int(i) for i in np.asarray(eids).reshape(-1) if i >= 0])
            extra += [t for t in etexts if ev in t][:1]
        records.append({**q, "hay": spec.name, "neighbours": texts, "gold": gold, "extra": extra})
    shutil.rmtree(hay)  # the records hold everything the reader needs
    return records


def main(argv: list[str] | None = None) -> None:
    """Write `{out}/{split}.jsonl` (one QA record per line)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/reader")
    ap.add_argument("--split", choices=("train", "heldout", "dev"), default="train")
    ap.add_argument("--limit", type=int, default=0, help="only the first N haystacks (for tests)")
    ap.add_argument("--tasks", default="needles,twohop", help="needles (RULER tasks), twohop, or both")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",")
    specs = (_specs(args.split) if "needles" in tasks else []) + (
        twohop_specs(args.split) if "twohop" in tasks else []
    )
    specs = specs[: args.limit or None]
    name = args.split if tasks == ["needles", "twohop"] else f"{args.split}-{'-'.join(tasks)}"
    tmp = out / f"{name}.jsonl.tmp"
    t0 = time.perf_counter()
    n = 0
    with open(tmp, "w") as f:
        for i, spec in enumerate(specs):
            recs = build_haystack(spec, out / "work")
            for r in recs:
                f.write(json.dumps(r) + "\n")
            n += len(recs)
            hit = sum(any(len(g) > 0 for g in r["gold"]) for r in recs) / max(1, len(recs))
            print(
                f"[{i + 1}/{len(specs)}] {spec.name}: {len(recs)} questions, gold in top-{TOP_N} {hit:.2f}"
                f" ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / f"{name}.jsonl")
    print(f"wrote {n} records to {out / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
