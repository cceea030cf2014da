"""CLI of the model: `retro neighbours`, `retro train`, `retro generate`, `retro eval lm`.

Imports stay light (no jax at import time): each handler imports what it needs.
`eval lm` joins the shared `eval` group (`pipelines.cli.eval_group`).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.cli import eval_group


def cmd_neighbours(args) -> int:
    """Precompute training neighbours through an index into a neighbour store."""
    from index import Index
    from util.runinfo import check_writable

    if args.k <= 0:
        raise ValueError(f"neighbours: -k must be > 0, got {args.k}")
    if not 0.0 <= args.heldout < 1.0:
        raise ValueError(f"neighbours: --heldout must be in [0, 1), got {args.heldout}")
    chunks = Index.open(args.index).num_chunks
    if args.k > chunks:
        raise ValueError(f"neighbours: -k {args.k} is larger than the index ({chunks} chunks)")
    check_writable(args.out, "--out", folder=True)
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


RETRIEVERS = ("cascade", "bm25", "static")


def _retriever_choice(args, idx) -> tuple:
    """Validate generate's retrieval flags -> (name: cascade | bm25 | static, CascadeConfig or None, k).

    Bad values raise a one-line ValueError naming the flag, before any model is loaded. --set / --config
    only apply to cascade; k is one value (-k, or `--set k=N`; both and different is an error; default 2).
    """
    name = args.retriever or "cascade"
    if name not in RETRIEVERS:
        raise ValueError(f"generate: --retriever {name!r}: expected one of {', '.join(RETRIEVERS)}")
    if name != "cascade" and (args.set or args.config):
        raise ValueError(f"generate: --set/--config apply to --retriever cascade, not {name}")
    cfg = None
    k = 2 if args.k is None else args.k
    if name == "cascade" and not args.no_retrieval:
        from pipelines.cascade_config import cascade_config, explicit_fields

        sets = list(args.set or [])
        given_k = args.k is not None or "k" in explicit_fields(args.config, sets)
        cfg = cascade_config(args.config, sets, k=args.k if given_k else k)
        k = cfg.k
    if k <= 0:
        raise ValueError(f"generate: -k must be > 0, got {k}")
    if idx is not None and k > idx.num_chunks:
        raise ValueError(f"generate: -k {k} is larger than the index ({idx.num_chunks} chunks)")
    return name, cfg, k


def _make_retriever(args, name: str, cfg, idx, k: int, r: int, log: list):
    """The retriever generate decodes with (None for --no-retrieval); cascade models load here, once."""
    if args.no_retrieval:
        return None
    from retro.sampling import cascade_retriever, index_retriever

    if name == "cascade":
        return cascade_retriever(idx, k, r, config=cfg, log=log)
    return index_retriever(idx, k, r, name, log=log)


def cmd_generate(args) -> int:
    """Generate a continuation of a prompt, retrieving at each chunk boundary (cascade by default).

    --out DIR writes DIR/generation.json: prompt, completion, tokens, step, retriever, k, cascade_config
    (null unless cascade), retrieved (chunk ids per retrieval, in order), evidence (their provenance),
    retrieval (per retrieval: chunks, and for cascade the query text, per-stage latency_ms and each
    chunk's stage scores/ranks), run.
    """
    import sys

    if args.index is None and not args.no_retrieval:
        raise ValueError("generate: --index IDX is required (or --no-retrieval)")
    if args.max_new_tokens <= 0:
        raise ValueError(f"generate: --max-new-tokens must be > 0, got {args.max_new_tokens}")
    if not args.prompt.strip():
        raise ValueError("generate: --prompt is empty")
    from index import Index

    idx = Index.open(args.index) if args.index else None
    if idx is None and args.tokenizer_index is None:
        raise ValueError("generate: --no-retrieval needs --tokenizer-index IDX to encode the prompt")
    tok_idx = idx if idx is not None else Index.open(args.tokenizer_index)
    name, cascade_cfg, k = _retriever_choice(args, idx)
    if args.out:
        from util.runinfo import check_writable

        check_writable(args.out, "--out", folder=True)
    from retro.checkpoint import load_model  # jax: after every argument is checked
    from retro.sampling import Sampler

    model, step = load_model(args.run)
    tok = tok_idx.tokenizer
    if (model.cfg.vocab_size, model.cfg.pad_id) != (tok.vocab_size, tok.pad_id):
        raise ValueError(
            f"generate: {args.run} was trained with vocab {model.cfg.vocab_size} (pad {model.cfg.pad_id}), "
            f"the index's tokenizer has {tok.vocab_size} (pad {tok.pad_id}): use the run's own index"
        )
    log: list = []
    retriever = _make_retriever(args, name, cascade_cfg, idx, k, model.cfg.retrieved_len, log)
    prompt = tok.encode(args.prompt)
    out = Sampler(model, retriever, k).generate(
        prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed
    )
    text = tok.decode(out["tokens"])
    print(text)
    calls = [e if isinstance(e, dict) else {"chunks": e} for e in log]
    if calls and name == "cascade":
        totals = [c["latency_ms"].get("total", 0.0) for c in calls if c["latency_ms"]]
        mean = sum(totals) / max(len(totals), 1)
        print(f"retrieved at {len(calls)} chunk boundaries (cascade, {mean:.0f} ms each)", file=sys.stderr)
    if args.out:
        from util.configs import config_to_dict
        from util.runinfo import atomic_write_json, run_info

        retrieved = [c["chunks"] for c in calls]
        atomic_write_json(
            Path(args.out) / "generation.json",
            {
                "prompt": args.prompt,
                "completion": text,
                "tokens": out["tokens"],
                "step": step,
                "retriever": None if retriever is None else name,
                "k": k,
                "cascade_config": None if cascade_cfg is None else config_to_dict(cascade_cfg),
                "retrieved": retrieved,
                "evidence": [idx.provenance(ids) if ids else [] for ids in retrieved],
                "retrieval": calls,
                "run": run_info(),
            },
        )
    return 0


def cmd_eval_lm(args) -> int:
    """Held-out bits-per-byte with retrieval on and off, overall and leakage-filtered."""
    if args.out:
        from util.runinfo import check_writable

        check_writable(args.out, "--out", folder=True)
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
        leakage=args.leakage,
        leakage_k=args.leakage_k,
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
    p.add_argument("-k", type=int, default=2, help="neighbours per chunk (default 2)")
    p.add_argument(
        "--heldout", type=float, default=0.05, help="fraction of documents held out (default 0.05)"
    )
    p.add_argument("--method", default="bm25", choices=["bm25", "static"], help="retriever (default bm25)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_neighbours)

    p = subparsers.add_parser("train", help="train a RETRO model (retro train --config FILE key=value ...)")
    p.add_argument(
        "--config",
        default=None,
        help="YAML TrainConfig (see retro/train.py); model.NAME=value too (default: none, the built-in one)",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=500 model.n_layers=4"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (log lines instead)")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("generate", help="sample from a trained RETRO model with retrieval")
    p.add_argument("run", help="training run folder")
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument(
        "--index",
        default=None,
        help="index to retrieve from, whose tokenizer is used (default: none; required unless --no-retrieval)",
    )
    p.add_argument(
        "--tokenizer-index",
        default=None,
        help="with --no-retrieval: index whose tokenizer to use (default: none)",
    )
    p.add_argument("--no-retrieval", action="store_true", help="decode RETRO[OFF]")
    p.add_argument("-k", type=int, default=None, help="neighbours per chunk (default 2; or --set k=N)")
    p.add_argument(
        "--retriever",
        default=None,
        metavar="NAME",
        help="cascade (default: the ranker cascade over the chunk's text) | bm25 | static (chunk token ids)",
    )
    p.add_argument(
        "--set", action="append", metavar="key=value", help="CascadeConfig override (repeatable), e.g. n2=16"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of CascadeConfig fields (default: none, the built-in ones)",
    )
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy")
    p.add_argument(
        "--top-k",
        type=int,
        default=0,
        help="with --temperature > 0: sample from the K most likely tokens only; 0 = from all",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (with --temperature > 0)")
    p.add_argument(
        "--out",
        default=None,
        help="folder for generation.json: text, retrieved chunks, evidence, per-stage latency "
        "(default: none, print the text only)",
    )
    p.set_defaults(func=cmd_generate)

    group = eval_group(subparsers)
    if "lm" not in group.choices:
        p = group.add_parser("lm", help="held-out bits-per-byte with retrieval on/off (leakage-filtered too)")
        p.add_argument("runs", nargs="+", help="training run folder(s); all are scored on the same chunks")
        p.add_argument("--data", required=True, help="neighbour store (its held-out documents are scored)")
        p.add_argument(
            "--out",
            default=None,
            help="folder for results.json and per_chunk.jsonl (default: none, print the table only)",
        )
        p.add_argument("-k", type=int, default=2, help="neighbours per chunk")
        p.add_argument("--seq-len", type=int, default=512, help="tokens per held-out sequence")
        p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
        p.add_argument("--max-sequences", type=int, default=0, help="0 = all held-out sequences")
        p.add_argument(
            "--alpha", type=float, default=0.125, help="leakage filter: max longest-common-run / M"
        )
        p.add_argument(
            "--leakage",
            default="read",
            choices=["read", "paper"],
            help="neighbours a chunk's leakage is measured against: read (default; the K read when "
            "predicting it, those of chunk u-1; a deviation) | paper (its own --leakage-k nearest, section 2.6)",
        )
        p.add_argument(
            "--leakage-k",
            type=int,
            default=10,
            help="with --leakage paper: nearest neighbours per chunk (10 in the paper; the store must hold them)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_eval_lm)
