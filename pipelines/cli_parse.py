"""How the `retro` command line is parsed and documented: key=value anywhere, defaults in every help.

Why a module of its own: the README's commands are checked against the real parser (tests/
test_cli_docs.py), so the parse step must be callable without running anything (`parse_args`), and
every subcommand's help must say what an option does and what it defaults to (`DefaultsFormatter`,
`iter_parsers` to walk them all).

key=value overrides: commands that take config overrides (`index build`, `search`, `ask`, `train`,
`train-reader`) declare a positional `overrides` (nargs="*"). argparse fills such a positional only
from the words right after the positionals before it, so `retro index build docs/ --out IDX
shard_chunks=100000` used to fail with "unrecognized arguments". `parse_args` gives every left-over
`key=value` word to `overrides`, wherever it stands on the line; any other left-over word is still an
error, as it is for commands without overrides (they take `--set key=value`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")  # a config override word: key=value, key may be dotted


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that names each option's default, unless its text already does or there is none to name.

    argparse's own ArgumentDefaultsHelpFormatter also prints "(default: None)" and "(default: False)",
    which say nothing: None here means "from the config" (the help says which), False is a plain flag.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "default" not in text.lower()
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(default, bool)
            and default != []
        ):
            text += " (default: %(default)s)"
        return text


def iter_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator:
    """(command words, parser) for `parser` and every subcommand under it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, (*path, name))


def use_defaults_formatter(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand's help the `DefaultsFormatter` (the root keeps its own)."""
    for path, p in iter_parsers(parser):
        if path:
            p.formatter_class = DefaultsFormatter


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse like `parser.parse_args`, except that key=value words anywhere join `overrides`.

    Runs nothing and imports nothing heavy, so it is also the dry run that checks a documented command.
    Exits with status 2 and argparse's message on any other unrecognized word.
    """
    args, extra = parser.parse_known_args(argv)
    stray = [w for w in extra if not OVERRIDE.match(w)]
    if extra and (stray or not hasattr(args, "overrides")):
        words = " ".join(stray or extra)
        hint = "" if stray else " (this command takes config overrides as --set key=value)"
        parser.error(f"unrecognized arguments: {words}{hint}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args
