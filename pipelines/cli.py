"""The `retro` command line: one entry point, one subcommand group per package.

Each module in COMMAND_MODULES exposes `register(subparsers)`, which adds its subcommands and
sets `func` on each parser. Groups several packages add to (`eval`: `eval lm` from retro/, `eval niah`
from evals/) are made here, once, by `eval_group`. `main` parses, calls `func(args)` and turns user errors
(ValueError, and OSError: a file that cannot be read or written) into a one-line message on stderr with
exit status 2 (no traceback for bad input). Handlers check their arguments and outputs before importing
anything heavy (torch, sentence-transformers, jax, faiss), so such an error comes in about a second.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipelines.cli_parse import parse_args, use_defaults_formatter

# Subcommand groups, in the order `retro --help` lists them.
COMMAND_MODULES = [
    "index.cli",  # retro tokenizer train | retro index build/info
    "pipelines.search_cli",  # retro search | retro ask
    "evals.cli",  # retro eval niah | retro demo
    "retro.cli",  # retro neighbours | train | generate | eval lm
    "serve.cli",  # retro serve
    "pipelines.plan_cli",  # retro plan
]

QUICKSTART = """\
quickstart:
  retro demo                              the main job: haystacks with 100 needles, BM25 beside the cascade
  retro index build CORPUS --out IDX      index a file or folder (.txt .md .jsonl .parquet)
  retro index info IDX                    docs, tokens, chunks, shards, bytes on disk and per token
  retro search IDX "list open sockets"    ranked chunks with each cascade stage's rank and score
  retro ask IDX "which flag makes tar follow symlinks?"
                                          the reader's answer, the spans it cites, the evidence
  retro eval niah --tokens 1M --needles 100 --out runs/niah
                                          needle recall per stage, depth and haystack size
  retro serve IDX                         an HTTP server and a page to ask from (127.0.0.1:8000)
  retro plan --tokens 1e12                shards, nodes, memory, disk, build time, latency, from measurements

`retro COMMAND --help` lists a command's options and their defaults; config fields go as key=value.
"""


def version() -> str:
    """The installed distribution's version (package metadata), or a note when run from a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("retro")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


EVAL_HELP = "evaluations: needle-in-a-haystack retrieval (niah), LM bits-per-byte (lm)"


def eval_group(subparsers) -> argparse._SubParsersAction:
    """The subparsers of the shared `eval` command: made on first use, the same one afterwards."""
    parser = subparsers.choices.get("eval")
    if parser is None:
        parser = subparsers.add_parser("eval", help=EVAL_HELP)
        parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
        return parser.add_subparsers(dest="eval_command", metavar="EVAL")
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def build_parser() -> argparse.ArgumentParser:
    """The full `retro` parser with every registered subcommand group."""
    parser = argparse.ArgumentParser(
        prog="retro",
        description=__doc__.splitlines()[0],
        epilog=QUICKSTART,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    use_defaults_formatter(parser)
    return parser


def _one_line(e: Exception) -> str:
    """The message of a user error: an OSError the system raised (a disk that filled up, a folder that
    became read-only mid-run) as "path: reason", without the errno; our own messages as they are."""
    if isinstance(e, OSError) and e.strerror and e.filename and str(e).startswith("[Errno"):
        return f"{e.filename}: {e.strerror}"
    return str(e)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `retro` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parse_args(parser, argv)  # key=value words anywhere join a command's overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (ValueError, OSError) as e:
        if os.environ.get("RETRO_DEBUG"):
            raise
        print(f"retro: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("retro: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
