"""CLI of the model: `retro neighbours`, `retro train`, `retro generate`, `retro eval lm`.

Imports stay light (no jax at import time): each handler imports what it needs.
`eval_subparsers(subparsers)` returns the shared `eval` group's subparsers, creating the group once,
so other packages (evals/) add their own `eval` subcommands to the same group.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def eval_subparsers(subparsers) -> argparse._SubParsersAction:
    """The subparsers of the shared `eval` command (created on first use, found afterwards)."""
    parser = subparsers.choices.get("eval")
    if parser is None:
        parser = subparsers.add_parser(
            "eval", help="evaluations: LM bits-per-byte (lm), needle-in-a-haystack (niah)"
        )
        parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="eval_command", metavar="EVAL")


def cmd_neighbours(args) -> int:
    """Precompute training neighbours through an index into a neighbour store."""
    from retro.data import precompute_neighbours

    meta = precompute_neighbours(
        args.index, args.out, k=args.k, heldout_frac=args.heldout, method=args.method, quiet=args.quiet
    )
    print(
        f"| chunks | K | method | found | held-out docs frac |\n|---|---|---|---|---|\n"
        f"| {meta['num_chunks']} | {meta['k']} | {meta['method']} | {meta['found_fraction']:.1%} "
        f"| {meta['heldout_frac']} |"
    )
    return 0


def cmd_train(args) -> int:
    """Train (or resume) a RETRO model."""
    from retro.train import config_with_model_overrides, train

    cfg = config_with_model_overrides(args.config, args.overrides)
    res = train(cfg, quiet=args.quiet)
    if "final_loss" not in res:
        return 0
    print(
        f"| step | loss | tokens/s | MFU | params | wall s |\n|---|---|---|---|---|---|\n"
        f"| {res['step']} | {res['final_loss']:.4f} | {res['tokens_per_s']:.0f} | {res['mfu']:.1%} "
        f"| {res['params']:,} | {res['wall_s']:.0f} |"
    )
    return 0


def cmd_generate(args) -> int:
    """Generate a continuation of a prompt with retrieval at chunk boundaries."""
    from retro.checkpoint import load_model
    from retro.sampling import Sampler, index_retriever

    if args.index is None and not args.no_retrieval:
        raise ValueError("generate: --index IDX is required (or --no-retrieval)")
    model, step = load_model(args.run)
    from index import Index

    idx = Index.open(args.index) if args.index else None
    if idx is None and args.tokenizer_index is None:
        raise ValueError("generate: --no-retrieval needs --tokenizer-index IDX to encode the prompt")
    tok_idx = idx if idx is not None else Index.open(args.tokenizer_index)
    log: list = []
    retriever = (
        None
        if args.no_retrieval
        else index_retriever(idx, args.k, model.cfg.retrieved_len, args.method, log=log)
    )
    prompt = tok_idx.tokenizer.encode(args.prompt)
    out = Sampler(model, retriever, args.k).generate(
        prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed
    )
    text = tok_idx.tokenizer.decode(out["tokens"])
    print(text)
    if args.out:
        from retro.runinfo import atomic_write_json, run_info

        evidence = [idx.provenance(ids) if ids else [] for ids in log] if idx is not None else []
        atomic_write_json(
            Path(args.out) / "generation.json",
            {
                "prompt": args.prompt,
                "completion": text,
                "tokens": out["tokens"],
                "step": step,
                "retrieved": log,
                "evidence": evidence,
                "run": run_info(),
            },
        )
    return 0


def cmd_eval_lm(args) -> int:
    """Held-out bits-per-byte with retrieval on and off, overall and leakage-filtered."""
    from retro.evaluate import evaluate_runs, markdown_table

    res = evaluate_runs(
        args.runs,
        args.data,
        out=args.out,
        k=args.k,
        seq_len=args.seq_len,
        max_sequences=args.max_sequences,
        batch_size=args.batch_size,
        alpha=args.alpha,
        quiet=args.quiet,
    )
    print(markdown_table(res))
    if not args.out:
        print(json.dumps({"note": "pass --out DIR to write results.json"}))
    return 0


def register(subparsers) -> None:
    """Add `neighbours`, `train`, `generate` and `eval lm`."""
    p = subparsers.add_parser("neighbours", help="precompute RETRO training neighbours through an index")
    p.add_argument("index", help="index folder (retro index build)")
    p.add_argument("--out", required=True, help="neighbour store folder to write")
    p.add_argument("--k", type=int, default=2, help="neighbours per chunk (default 2)")
    p.add_argument(
        "--heldout", type=float, default=0.05, help="fraction of documents held out (default 0.05)"
    )
    p.add_argument("--method", default="bm25", choices=["bm25", "static"], help="retriever (default bm25)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_neighbours)

    p = subparsers.add_parser("train", help="train a RETRO model (retro train --config FILE key=value ...)")
    p.add_argument(
        "--config", default=None, help="YAML TrainConfig (see retro/train.py); model.NAME=value too"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=500 model.n_layers=4"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (log lines instead)")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("generate", help="sample from a trained RETRO model with retrieval")
    p.add_argument("run", help="training run folder")
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument("--index", default=None, help="index to retrieve from (and whose tokenizer to use)")
    p.add_argument(
        "--tokenizer-index", default=None, help="with --no-retrieval: index whose tokenizer to use"
    )
    p.add_argument("--no-retrieval", action="store_true", help="decode RETRO[OFF]")
    p.add_argument("--k", type=int, default=2, help="neighbours per chunk")
    p.add_argument("--method", default="bm25", choices=["bm25", "static"], help="retriever")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default=None, help="folder for generation.json (text, retrieved chunks, evidence)"
    )
    p.set_defaults(func=cmd_generate)

    group = eval_subparsers(subparsers)
    if "lm" not in group.choices:
        p = group.add_parser("lm", help="held-out bits-per-byte with retrieval on/off (leakage-filtered too)")
        p.add_argument("runs", nargs="+", help="training run folder(s); all are scored on the same chunks")
        p.add_argument("--data", required=True, help="neighbour store (its held-out documents are scored)")
        p.add_argument("--out", default=None, help="folder for results.json and per_chunk.jsonl")
        p.add_argument("--k", type=int, default=2, help="neighbours per chunk")
        p.add_argument("--seq-len", type=int, default=512)
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--max-sequences", type=int, default=0, help="0 = all held-out sequences")
        p.add_argument(
            "--alpha", type=float, default=0.125, help="leakage filter: max longest-common-run / M"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_eval_lm)
