"""`retro tokenizer train` and `retro index build | info`."""

from __future__ import annotations

import argparse
import json
import sys

from index.build import BuildConfig, build_index
from util.configs import resolve_config
from util.ray_cluster import add_engine_args, check_engine
from util.runinfo import check_writable


def _train_tokenizer(args: argparse.Namespace) -> int:
    from index.corpus import CorpusReader
    from index.tokenizer import Tokenizer, train_tokenizer, vocab_warning
    from util.progress import phase

    check_writable(args.out, "--out")
    reader = CorpusReader(args.corpus)
    with phase(f"training the tokenizer (vocab {args.vocab:,}) on {args.corpus}", args.quiet):
        path = train_tokenizer(
            (d.text for d in reader), args.out, vocab_size=args.vocab, sample_chars=args.sample_chars
        )
    tok = Tokenizer(path)
    if warning := vocab_warning(tok.vocab_size, args.vocab):
        print(f"warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"tokenizer: {path} (vocab {tok.vocab_size}, sha256 {tok.sha256[:12]}...)")
    return 0


def _build(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + list(args.set or [])
    flags = {
        "vocab_size": args.vocab,
        "tokenizer": args.tokenizer,
        "faiss_factory": args.factory,
        "static": args.static,
        "shard_chunks": args.shard_chunks,
        "chunk_len": args.chunk_len,
    }
    overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.dense is not None:
        overrides.append(f"dense={'on' if args.dense else 'off'}")
    cfg = resolve_config(BuildConfig, args.config, overrides)
    check_engine(args.engine, args.ray_address)
    check_writable(args.out, "--out", folder=True)
    manifest = build_index(
        args.corpus,
        args.out,
        cfg,
        append=args.append,
        quiet=args.quiet,
        keep_duplicates=args.keep_duplicates,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    if not args.quiet:
        from index.store import Index

        _print_info(Index.open(args.out).info())
        warnings = manifest["corpora"][-1]["input"]
        if warnings["warnings"]:
            print(f"\ninput problems ({sum(warnings['warnings'].values())}):", file=sys.stderr)
            for kind, n in warnings["warnings"].items():
                print(f"  {n:8d}  {kind}", file=sys.stderr)
            for ex in warnings["examples"][:10]:
                print(f"  e.g. {ex}", file=sys.stderr)
    return 0


def _print_info(info: dict) -> None:
    rows = [
        ("docs", f"{info['docs']:,}"),
        ("tokens", f"{info['tokens']:,}"),
        ("chunks", f"{info['chunks']:,}"),
        ("shards", str(info["shards"])),
        ("generation", str(info["generation"])),
        ("tiers", ", ".join(info["tiers"])),
        ("vocab", f"{info['tokenizer']['vocab_size']:,}"),
        ("bytes on disk", f"{info['bytes_on_disk']:,}"),
        ("bytes per token", f"{info['bytes_per_token']:.2f}"),
    ]
    if info["input_warnings"]:
        rows.append(("input warnings", ", ".join(f"{n} {k}" for k, n in info["input_warnings"].items())))
    rows += [("warning", w) for w in info.get("warnings", [])]
    print(f"| index | {info['path']} |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


def _info(args: argparse.Namespace) -> int:
    from index.store import Index

    info = Index.open(args.index, verify=args.verify).info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        _print_info(info)
        if args.verify:  # a damaged index does not open: it exits 2 naming the first bad file
            v = info["verified"]
            print(f"\nverified: {v['shards']} shards, {v['files']} files, every sha256 matches: OK")
    return 0


def register(subparsers) -> None:
    """Add `tokenizer` and `index` command groups."""
    tok = subparsers.add_parser("tokenizer", help="train a sentencepiece tokenizer").add_subparsers(
        dest="tokenizer_command", metavar="COMMAND", required=True
    )
    p = tok.add_parser("train", help="train on a bounded sample of a corpus")
    p.add_argument("corpus", help="file or folder (.txt .md .jsonl .parquet)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument(
        "--sample-chars", type=int, default=10_000_000, help="characters sampled from the corpus start"
    )
    p.add_argument("--out", required=True, help="output .model file")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=_train_tokenizer)

    idx = subparsers.add_parser("index", help="build and inspect chunk indexes").add_subparsers(
        dest="index_command", metavar="COMMAND", required=True
    )
    p = idx.add_parser(
        "build",
        help="build (resume, or --append to) an index from a corpus",
        description="Build a chunk index. Rerunning a killed build resumes it; --append adds a "
        "corpus as new shards. Any BuildConfig field can be set as key=value after the corpus, or with "
        "--set key=value anywhere.",
    )
    p.add_argument("corpus", help="file or folder (.txt .md .jsonl .parquet), read recursively")
    p.add_argument(
        "--out", required=True, help="index folder (new, empty, or an unfinished build of the same command)"
    )
    p.add_argument("--append", action="store_true", help="add the corpus to the existing index at --out")
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="with --append, also add documents whose text the index already holds (default: skip them)",
    )
    p.add_argument(
        "--config", help="YAML file of BuildConfig fields (default: none; flags and key=value override it)"
    )
    p.add_argument(
        "--tokenizer",
        help="use this sentencepiece model instead of training one (default: train one on the first "
        "sample_chars characters)",
    )
    p.add_argument("--vocab", type=int, help="vocabulary size of the trained tokenizer (default 32000)")
    p.add_argument("--factory", help="FAISS factory string for the static tier (default: auto by size)")
    p.add_argument("--static", choices=["pooled", "model2vec"], help="static embedder (default pooled)")
    p.add_argument(
        "--dense",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store dense MiniLM vectors (default: auto, on up to 4096 chunks)",
    )
    p.add_argument("--shard-chunks", type=int, help="chunks per shard (default 262144)")
    p.add_argument("--chunk-len", type=int, help="tokens per chunk (default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    add_engine_args(p, "each shard is written by a Ray task")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="BuildConfig override, anywhere on the line (repeatable)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="BuildConfig overrides, right after the corpus"
    )
    p.set_defaults(func=_build)

    p = idx.add_parser("info", help="docs, tokens, chunks, shards, tiers, bytes on disk and per token")
    p.add_argument("index", help="index folder built by `retro index build`")
    p.add_argument("--json", action="store_true", help="print the info as one JSON object instead of a table")
    p.add_argument("--verify", action="store_true", help="check every file's sha256 and print the verdict")
    p.set_defaults(func=_info)
