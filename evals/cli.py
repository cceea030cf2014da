"""CLI for the evals: `retro eval niah ...` and `retro demo`.

`register(subparsers)` adds `demo`, and `niah` to the shared `eval` group (`pipelines.cli.eval_group`).
"""

from __future__ import annotations

import argparse
import dataclasses

from pipelines.cli import eval_group
from util.runinfo import check_writable

DEMO_HELP = (
    "build a >=1M-token haystack with 100 needles, index it, run the multi-needle eval with BM25 and "
    "the cascade side by side, answer with the reader and write the table + heatmaps (no data needed; "
    "~4 min of CPU on a 2-core box, README; --retriever bm25 --no-reader takes ~11 s)"
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default=None,
        help="output folder (results.json, samples.jsonl, PNGs, cells/); default: runs/demo for demo, "
        "required for eval niah",
    )
    p.add_argument(
        "--retriever",
        action="append",
        default=None,
        help="cheap | bm25 | static | dense | cascade[,KEY=VALUE...] | MODULE:FACTORY; repeat it (or join with +) "
        "to ask each retriever over the same index, rows side by side (default: bm25 and cascade for demo, "
        "cheap for eval niah)",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="ask only the first N questions of each cell (default: 0, all)",
    )
    p.add_argument(
        "-k", type=int, default=None, help="neighbours kept at the final stage (recall@k; default: 10)"
    )
    p.add_argument(
        "--build",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="index BuildConfig override (repeatable), e.g. --build dense=auto",
    )
    p.add_argument(
        "--resume", action="store_true", help="skip finished samples and reuse built haystacks/indexes"
    )
    p.add_argument(
        "--reader",
        default=None,
        help="who answers: the shipped RETRO reader (default), a checkpoint folder, or 'none' (retrieval only)",
    )
    p.add_argument("--no-reader", action="store_true", help="retrieval only (same as --reader none)")
    p.add_argument(
        "--reader-mode", default=None, help="constrained (default: copy spans of the neighbours) | free"
    )
    p.add_argument(
        "--hops",
        type=int,
        default=None,
        help="reading hops per question (default: 0, what the task needs: one per chain link plus one "
        "for multihop, two for twohop, else one)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> None:
    """Add `eval niah` (to the shared eval group) and `demo`."""
    group = eval_group(subparsers)
    p = group.add_parser(
        "niah",
        help="multi-needle in a haystack: retrieval recall per needle, stage, depth, size",
        description="Generate haystacks with hidden needles, index them, ask every question "
        "through a retriever and report recall (results.json, samples.jsonl, PNGs).",
    )
    # None = not given: the NiahConfig default (evals/niah.py), after --config and --set; the help says it.
    p.add_argument(
        "--haystack", default=None, help="comma list of noise | words | needles | text:DIR (default: needles)"
    )
    p.add_argument(
        "--tokens", default=None, help="comma list of haystack sizes, e.g. 128K,1M,10M (default: 128K,1M)"
    )
    p.add_argument(
        "--needles",
        default=None,
        help="comma list of needle counts, e.g. 1,4,8,25,100,1000 (default: 1,8,100)",
    )
    p.add_argument(
        "--task",
        default=None,
        help="comma list of single | multikey | multivalue | multiquery | multihop | nonliteral | twohop "
        "(default: single)",
    )
    p.add_argument("--depths", type=int, default=None, help="depth buckets, the heatmap rows (default: 11)")
    p.add_argument(
        "--trials",
        type=int,
        default=None,
        help="haystacks per cell (default: 0, enough to cover every depth bucket)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of haystacks, needles and questions (default: 0)"
    )
    p.add_argument("--key-type", default=None, help="needle keys: word | number | uuid (default: word)")
    p.add_argument("--value-type", default=None, help="needle values: word | number | uuid (default: number)")
    p.add_argument(
        "--index",
        default=None,
        help="reuse this index (one cell only) instead of building (default: none, build one per cell)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="YAML file of NiahConfig fields; flags given override it (default: none, the built-in ones)",
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="NiahConfig override (repeatable)"
    )
    _common(p)
    p.set_defaults(func=cmd_niah)

    t = subparsers.add_parser(
        "train-reader",
        help="train the RETRO reader from nothing: QA data from generated haystacks, then retro.reader_train",
        description="Make the reader's QA data (evals.reader_data, seeds 1000+; skipped when "
        "DATA/train.jsonl exists), then train the tokenizer and the network and write the checkpoint "
        "(retro/assets/reader/ by default). configs/reader.yaml reproduces the shipped reader.",
    )
    t.add_argument("--config", default="configs/reader.yaml", help="ReaderTrainConfig YAML")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="ReaderTrainConfig overrides")
    t.set_defaults(func=cmd_train_reader)

    d = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    d.add_argument(
        "--tokens", default="128K,1M", help="comma list of haystack sizes (the largest should be >= 1M)"
    )
    d.add_argument("--needles", default="100", help="comma list of needle counts")
    d.add_argument("--haystack", default="needles", help="noise | words | needles | text:DIR")
    _common(d)
    d.set_defaults(func=cmd_demo)


def _config(args, **extra):
    """NiahConfig from defaults, then --config YAML, then --set overrides, then the flags given."""
    from evals.niah import NiahConfig, parse_haystack, parse_list, parse_size
    from util.configs import resolve_config

    retriever = "+".join(args.retriever) if args.retriever else None
    reader = "none" if args.no_reader else args.reader
    values = {"retriever": retriever, "k": args.k, "max_samples": args.max_samples, **extra}  # None: keep
    values |= {"reader": reader, "reader_mode": args.reader_mode, "hops": args.hops}
    if args.haystack is not None:
        values["haystacks"] = parse_list(args.haystack, "haystack")
        for h in values["haystacks"]:
            parse_haystack(h)
    if args.tokens is not None:
        values["tokens"] = parse_list(args.tokens, "--tokens", parse_size)
    if args.needles is not None:
        values["needles"] = parse_list(args.needles, "--needles", int)
    if args.build:
        values["build"] = tuple(args.build)
    base = resolve_config(NiahConfig, args.config) if getattr(args, "config", None) else None
    cfg = resolve_config(NiahConfig, None, getattr(args, "set", []), base=base)
    values = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(
        cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    ).check()


def cmd_niah(args) -> int:
    """`retro eval niah`: run the grid and print the table."""
    from evals.niah import parse_list, run_niah

    cfg = _config(
        args,
        tasks=parse_list(args.task, "--task") if args.task else None,
        depths=args.depths,
        trials=args.trials,
        seed=args.seed,
        key_type=args.key_type,
        value_type=args.value_type,
        index=args.index,
    )
    if not args.out:
        raise ValueError("--out is required (e.g. --out runs/niah)")
    check_writable(args.out, "--out", folder=True)
    results = run_niah(cfg, args.out, resume=args.resume, quiet=args.quiet)
    print(f"wrote {args.out}/results.json, samples.jsonl and {len(results['rows'])} row(s) of plots")
    return 0


def cmd_demo(args) -> int:
    """`retro demo`: the README's main job (synthetic haystack, 100 needles, table + heatmap)."""
    from evals.niah import run_niah

    if args.retriever is None:
        # BM25 alone beside the full cascade, over one index: BM25 finds every needle here in ~1 ms
        # (BENCHMARKS.md, Evals), so the table shows what each cascade stage keeps against it.
        args.retriever = ["bm25", "cascade"]
    cfg = _config(args, tasks=("single",), depths=11, trials=1)
    out = args.out or "runs/demo"
    check_writable(out, "--out", folder=True)
    results = run_niah(cfg, out, resume=args.resume, quiet=args.quiet)
    print(
        f"demo finished in {results['seconds']:.0f} s: {out}/results.json, {out}/heatmap_*.png, "
        f"{out}/recall_vs_tokens.png"
    )
    return 0


def cmd_train_reader(args) -> int:
    """`retro train-reader`: the reader's data (when missing), then its training (retro/reader_train.py)."""
    from pathlib import Path

    from evals import reader_data
    from retro import reader_train
    from util.configs import resolve_config

    if not Path(args.config).is_file():
        raise FileNotFoundError(f"{args.config}: no such config file")
    cfg = resolve_config(reader_train.ReaderTrainConfig, args.config, args.overrides)
    if not (Path(cfg.data) / "train.jsonl").is_file():
        reader_data.main(["--out", cfg.data, "--split", "train"])
    reader_train.main(["--config", args.config, *args.overrides])
    return 0
