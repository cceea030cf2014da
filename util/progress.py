"""Progress a person can read: every long phase has a name, and shows counts or at least a clock.

Two shapes, both on stderr and both silenced by `quiet` (the CLI's `--quiet`):
- `bar(...)`: a labelled tqdm bar for work with counts (tokens, pieces, chunks), with throughput;
- `phase(...)`: a named line for one blocking call with no counts (sentencepiece training, loading
  a model, training a FAISS quantizer). Its clock ticks from a helper thread while the call runs, so
  a phase of minutes never looks hung, and it ends with how long the phase took.
`note(...)` prints a one-line status ("resuming: ...") under the same `quiet` rule.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_TICK_S = 0.5  # how often a phase's clock is redrawn


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
def phase(desc: str, quiet: bool) -> Iterator[None]:
    """Show `desc: <elapsed>` while the block runs, then `desc: done in <elapsed>`."""
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
