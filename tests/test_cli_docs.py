"""The docs match the program: every `retro ...` command the README and docs/ show parses, every option
says what it does and its default, the quickstart names the main commands, `--version` works, and the
figures the README quotes are the code's defaults.

Parsing only (`pipelines.cli_parse.parse_args`): nothing is built or run, so this stays fast. A synopsis
line such as `retro search IDX "q" [-k 10] [--json] [--reader DIR | --no-reader]` is checked with every
optional part left out, and with each alternative of every part put in.
"""

from __future__ import annotations

import argparse
import re
import shlex
from importlib.metadata import version
from pathlib import Path

import pytest

from pipelines.cli import QUICKSTART, build_parser, main
from pipelines.cli_parse import iter_parsers, parse_args

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
PLACEHOLDERS = {"COMMAND", "..."}  # words of an inline mention that stand for something
GROUP = re.compile(r"(?<!\S)\[([^\[\]]*)\]")  # an optional part: `[...]` that starts a word


def _variants(line: str) -> list[str]:
    """The concrete commands a synopsis line stands for: every `[part]` out, then each alternative in."""
    groups = [g.split(" | ") for g in GROUP.findall(line)]
    widest = max((len(g) for g in groups), default=0)
    out = [GROUP.sub("", line)] if groups else []
    for j in range(max(widest, 1)):
        picks = iter([g[min(j, len(g) - 1)] for g in groups])
        out.append(GROUP.sub(lambda _m, picks=picks: next(picks), line))
    # `a|b` inside a word (a value choice) takes its first alternative; a bare `...` repeats nothing
    out = [re.sub(r"(?<=\s)([\w-]+)\|[\w|-]+", r"\1", v) for v in out]
    return [re.sub(r"(?<!\S)\.\.\.(?!\S)", "", v) for v in out]


def _commands(text: str) -> list[tuple[str, bool]]:
    """(command, full) for the `retro ...` commands of a markdown text.

    Lines of fenced blocks (`\\` continuations joined, `&&` chains split, `# comments` dropped) are full
    commands. An inline code span is one when it gives an argument (`retro neighbours IDX --out NB -k
    10`); one that only names a command and options (`retro search --json`) is a mention, and a span that
    only names a command (`retro ask`) is prose."""
    out = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"(?:^|\s)#\s", line)[0]
            out += [(p.strip(), True) for p in re.split(r"\s&&\s", line) if p.strip().startswith("retro ")]
    names = {n for path, _ in iter_parsers(build_parser()) for n in path}
    for span in re.findall(r"`(retro [^`]+)`", FENCE.sub("", text)):
        words = [w for w in span.split()[1:] if w not in names]
        if words:
            out.append((span, any(not w.startswith("-") and w not in PLACEHOLDERS for w in words)))
    return out


def _documented() -> list[tuple[str, str, bool]]:
    """(where, command, full) for every documented command variant, README first."""
    out = []
    for doc in DOCS:
        for cmd, full in _commands(doc.read_text(encoding="utf-8")):
            out += [(f"{doc.name}: {cmd}", v, full) for v in _variants(cmd)]
    quick = [re.split(r"\s{2,}", line.strip())[0] for line in QUICKSTART.splitlines()]  # command, then what
    out += [(f"QUICKSTART: {c}", c, True) for c in quick if c.startswith("retro ")]
    return out


def _dry_parse(command: str) -> argparse.Namespace:
    argv = shlex.split(command)
    assert argv[0] == "retro"
    try:
        args = parse_args(build_parser(), argv[1:])
    except SystemExit as e:
        pytest.fail(f"`{command}` does not parse (exit {e.code})")
    assert getattr(args, "func", None), f"`{command}` names no complete command"
    return args


def _check_mention(command: str) -> None:
    """A mention names a real command, and every option it names is one of that command's."""
    parsers = dict(iter_parsers(build_parser()))
    path: tuple[str, ...] = ()
    for w in command.split()[1:]:
        path = (*path, w) if (*path, w) in parsers else path
    known = {o for a in parsers[path]._actions for o in a.option_strings}
    bad = [w for w in command.split() if w.startswith("-") and w not in known]
    assert not bad, f"`{command}`: retro {' '.join(path)} has no option {', '.join(bad)}"


def test_readme_examples_are_found():
    """The extractor sees the README's commands, so an empty list cannot pass the test below."""
    cmds = [c for w, c, full in _documented() if w.startswith("README") and full]
    assert len(cmds) >= 30
    assert "retro index build docs/ --out IDX shard_chunks=100000 nprobe=64" in cmds
    assert any(c.startswith('retro search IDX "how do I list open network sockets"') for c in cmds)
    assert "retro demo" in cmds and any(c.startswith("retro ask IDX --questions") for c in cmds)


@pytest.mark.parametrize("where,command,full", _documented(), ids=lambda x: str(x)[:90])
def test_documented_command_parses(where, command, full):
    """Every command the docs show is accepted by the real parser (placeholders such as N become 1)."""
    if not full:
        return _check_mention(command)
    args = _dry_parse(re.sub(r"(?<=\s)N(?=\s|$)", "1", command))
    overrides = list(getattr(args, "overrides", []) or []) + list(getattr(args, "set", None) or [])
    if args.func.__name__ == "_build" and overrides:  # and the key=value words name real fields
        from index.build import BuildConfig
        from util.configs import resolve_config

        resolve_config(BuildConfig, None, overrides)
    if args.func.__name__ in ("_search", "_ask") and overrides:
        from pipelines.cascade_config import CascadeConfig
        from util.configs import resolve_config

        resolve_config(CascadeConfig, None, overrides)


def test_key_value_words_anywhere():
    """`key=value` after an option joins the overrides; elsewhere a stray word is still an error."""
    p = build_parser()
    a = parse_args(p, "index build docs/ --out IDX shard_chunks=100000 nprobe=64".split())
    assert a.corpus == "docs/" and a.overrides == ["shard_chunks=100000", "nprobe=64"]
    a = parse_args(p, "search IDX tar --json n2=24".split())
    assert a.query == "tar" and a.json and a.overrides == ["n2=24"]
    a = parse_args(p, "ask IDX --questions Q.jsonl --out A.jsonl k=5 n2=3".split())
    assert a.question is None and a.overrides == ["k=5", "n2=3"]
    for bad in ("search IDX tar --json stray", "eval niah --out X seed=3", "index info IDX --bogus"):
        with pytest.raises(SystemExit) as e:
            parse_args(p, bad.split())
        assert e.value.code == 2


def test_every_option_has_help_and_default():
    """Each argument of every subcommand has help; each option that takes a value names its default
    (the formatter adds it, or the text says it, e.g. 'default: the config's hops, 1') or that it is
    required. Repeatable options and plain flags have no default to name."""
    missing = []
    for path, parser in iter_parsers(build_parser()):
        fmt = parser._get_formatter()
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            text = fmt._expand_help(a) if a.help else ""
            plain = a.nargs == 0 or isinstance(a, argparse._AppendAction) or not a.option_strings
            if not text or not (plain or a.required or re.search(r"default|required", text, re.I)):
                missing.append(f"retro {' '.join(path)} {'/'.join(a.option_strings) or a.dest}: {text!r}")
        assert parser.format_help()  # every help renders (no stray % in a text)
    assert not missing, "\n".join(missing)
    gen = dict(iter_parsers(build_parser()))[("generate",)].format_help()
    assert "--top-k" in gen and "(default: 0)" in gen


def test_niah_help_defaults_are_the_config_defaults():
    """The eval niah flags default to NiahConfig's fields; their help must name those values."""
    from evals.niah import NiahConfig

    cfg = NiahConfig()
    helps = {a.dest: a.help for a in dict(iter_parsers(build_parser()))[("eval", "niah")]._actions}
    for dest, value in [
        ("seed", cfg.seed),
        ("depths", cfg.depths),
        ("trials", cfg.trials),
        ("k", cfg.k),
        ("hops", cfg.hops),
        ("max_samples", cfg.max_samples),
        ("key_type", cfg.key_type),
        ("value_type", cfg.value_type),
        ("task", ",".join(cfg.tasks)),
        ("haystack", ",".join(cfg.haystacks)),
        ("needles", ",".join(map(str, cfg.needles))),
        ("tokens", "128K,1M" if cfg.tokens == (128_000, 1_000_000) else "changed"),
    ]:
        assert f"default: {value}" in helps[dest], (dest, helps[dest])


def test_quickstart_names_the_main_commands():
    words = QUICKSTART.split()
    for cmd in ("index build", "search", "ask", "eval niah", "demo"):
        assert f"retro {cmd}" in " ".join(words), cmd


def test_version_from_package_metadata(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"retro {version('retro')}\n"


def test_readme_figures_are_the_code_defaults():
    """Numbers the README quotes from BuildConfig are its defaults (sample_chars, shard size, dense auto)."""
    from index.build import BuildConfig

    cfg, text = BuildConfig(), (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"`sample_chars` \((\d+)M\)", text)
    assert m and int(m.group(1)) * 1_000_000 == cfg.sample_chars
    assert f"shards of {cfg.shard_chunks:,} chunks" in text
    assert f"up to {cfg.dense_auto_max_chunks:,} estimated chunks" in text


def test_readme_links_stay_inside_the_repository():
    """Every relative link of the README and docs/ names a file of this repository (a clone has no ../)."""
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
            if "://" in target:
                continue
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{doc.name} links {target}"
        assert "../shared" not in text, f"{doc.name} points outside the repository"
    assert "docs/ARCHITECTURE.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def _runnable(command: str) -> bool:
    """The documented commands this file runs for real: reading an index (info, search, ask without the
    reader) and building one from the repository's own docs/ folder."""
    words = command.split()
    if words[1:3] == ["index", "info"] or words[1] == "search":
        return True
    if words[1] == "ask":
        return "--no-reader" in words
    return words[1:4] == ["index", "build", "docs/"]


@pytest.mark.slow
def test_documented_index_commands_run(tmp_path, capsys):
    """Every full documented `retro index info`, `retro search`, `retro ask --no-reader` and the README's
    `retro index build docs/ ...` run for real through `main` (exit 0), with the placeholders filled: IDX
    an index of this repository's docs/ (built by the documented command itself), N 1, FILE a YAML of
    cascade fields, Q.jsonl two questions, A.jsonl the output. The demo (the README's first command) is
    run by .ci/run."""
    commands = list(dict.fromkeys(c for _, c, full in _documented() if full and _runnable(c)))
    builds = [c for c in commands if " build " in c]
    assert builds and len(commands) >= 8, commands
    idx = tmp_path / "idx"
    (tmp_path / "cascade.yaml").write_text("n2: 24\n")
    (tmp_path / "Q.jsonl").write_text(
        '{"id": 1, "question": "how do I list open network sockets"}\n{"id": 2, "question": "tar"}\n'
    )
    fill = {
        "IDX": str(idx),
        "N": "1",
        "FILE": str(tmp_path / "cascade.yaml"),
        "Q.jsonl": str(tmp_path / "Q.jsonl"),
        "A.jsonl": str(tmp_path / "A.jsonl"),
        "docs/": str(ROOT / "docs"),
    }
    for command in builds + [c for c in commands if c not in builds]:
        argv = [fill.get(w, w) for w in shlex.split(command)[1:]]
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"`{command}` exited {rc}: {out.err[-2000:]}"
    assert (idx / "index.json").is_file()
