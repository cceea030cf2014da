"""Progress a person can read: every long phase has a name, and shows counts or at least a clock.

Two shapes, both on stderr and both silenced by `quiet` (the CLI's `--quiet`):
- `bar(...)`: a labelled tqdm bar for work with counts (tokens, pieces, chunks), with throughput;
- `phase(...)`: a named line for one blocking call with no counts (sentencepiece training, loading
  a model, training a FAISS quantizer). Its clock ticks from a helper thread while the call runs, so
  a phase of minutes never looks hung, and it ends with how long the phase took.
`note(...)` prints a one-line status ("resuming: ...") under the same `quiet` rule.

Fault injection, for the crash tests (tests/test_crash_matrix.py): `RETRO_KILL_AT=<point>[:<n>]`
makes the process send SIGKILL to itself the n-th time (default the first) it reaches the kill
point named <point>: a real `kill -9`, not an exception, so no `finally` or `atexit` runs. The points
are the phases of a build: `tokenizer`, `static`, `quantizer` (index/shared.py), `digests`, `manifest`
(twice per run: before index.json is written, and after it but before build.json goes;
index/build.py), `bm25` and `shard` (each shard: before its BM25 tier, and when its files are
complete but before its folder is renamed into place; index/shard.py). Unset, a point costs one
dictionary lookup. `RETRO_KILL_ONCE=<file>` makes the kill happen once across processes: the
process that first creates <file> dies, later ones pass the point (a Ray task retried after its
worker was killed runs in a fresh process whose counts start at zero; tests/test_ray_engine.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator

_TICK_S = 0.5  # how often a phase's clock is redrawn
KILL_ENV = "RETRO_KILL_AT"  # fault injection: "<point>[:<n>]" (see the module docstring)
KILL_ONCE_ENV = "RETRO_KILL_ONCE"  # a file: only the process that creates it is killed
_reached: Counter[str] = Counter()  # how often each kill point was reached in this process


def kill_point(name: str) -> None:
    """SIGKILL this process when $RETRO_KILL_AT names this point (and this is its n-th passage)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        once = os.environ.get(KILL_ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another process was killed here already
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def bar(total: int | None, desc: str, quiet: bool, unit: str = "it"):
    """A tqdm bar named `desc` (counts, rate, and a percentage when `total` is known)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=quiet,
        dynamic_ncols=True,
        file=sys.stderr,
    )


@contextlib.contextmanager
def phase(desc: str, quiet: bool, point: str | None = None) -> Iterator[None]:
    """Show `desc: <elapsed>` while the block runs, then `desc: done in <elapsed>`. `point`: the
    name of the kill point at the start of the phase (`kill_point`)."""
    if point:
        kill_point(point)
    if quiet:
        yield
        return
    from tqdm import tqdm

    line = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", file=sys.stderr, dynamic_ncols=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(_TICK_S):
            line.refresh()

    clock = threading.Thread(target=tick, name=f"progress: {desc}", daemon=True)
    clock.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        clock.join()
        line.bar_format = "{desc}: done in {elapsed}" if ok else "{desc}: stopped after {elapsed}"
        line.close()


def note(message: str, quiet: bool) -> None:
    """One status line on stderr (not a warning: `--quiet` silences it)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
