"""Reports a person reads: the markdown table, PNG heatmaps (depth x length) and recall-vs-tokens.

Matplotlib runs on the Agg backend (no display needed). Every writer returns the paths it wrote; the
`*_figure` functions return the matplotlib Figure itself, so a test or a notebook can inspect what a
person would see. Plots speak percent throughout (cells, colour bars, axes), as the table does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path


def fmt_tokens(n: int) -> str:
    """1_000_000 -> '1M', 128_000 -> '128K', 1_500_000 -> '1.5M'."""
    for div, suf in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{suf}" if abs(v - round(v)) < 1e-9 else f"{v:.3g}{suf}"
    return str(n)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def markdown_table(rows: list[dict]) -> str:
    """One line per cell: haystack, task, size, needles, recall at k and per stage, all-found, answer, p50."""
    stages: list[str] = []
    for r in rows:
        for st in r["recall_by_stage"]:
            if st not in stages:
                stages.append(st)
    multi = len({r.get("retriever") for r in rows}) > 1
    head = [
        "haystack",
        "task",
        *(["retriever"] if multi else []),
        "tokens",
        "context tokens",
        "needles",
        "k",
        "recall@k",
        "whole-sentence recall@k",
        *[f"{s} recall" for s in stages],
        "all found",
        "sample all found",
        "answer recall",
        "abstained",
        "p50 ms",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["haystack"],
            r["task"],
            *([str(r.get("retriever"))] if multi else []),
            fmt_tokens(r["tokens"]),
            f"{r['context_tokens']:,}",
            str(r["needles"]),
            str(r.get("k")),
            _pct(r["retrieval_recall"]),
            _pct(r.get("retrieval_recall_whole")),
            *[_pct(r["recall_by_stage"].get(s)) for s in stages],
            _pct(r["all_found_rate"]),
            _pct(r["sample_all_found_rate"]),
            _pct(r["answer_recall"]),
            _pct(r.get("abstain_rate")),
            "—" if r["latency_ms_p50"] is None else f"{r['latency_ms_p50']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by (haystack, task, needles, retriever), each sorted by haystack size."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["haystack"], r["task"], r["needles"], r.get("retriever") or "")].append(r)
    return {key: sorted(rs, key=lambda r: r["tokens"]) for key, rs in sorted(groups.items())}


def _k_text(rows: list[dict]) -> str:
    """'k = 10' (or 'k = 5, 10' when cells differ); '' when no row says."""
    ks = sorted({r.get("k") for r in rows if r.get("k") is not None})
    return f"k = {', '.join(map(str, ks))}" if ks else ""


HEATMAP_PANELS = (("recall_by_depth", "retrieval recall@k"), ("answer_by_depth", "answer recall"))


def heatmap_figure(rows: list[dict], depths: int, retriever: str = ""):
    """The heatmap of one (haystack, task, needles[, retriever]) group: % of needles found per depth
    bucket (rows) and haystack size (columns), with the reader's answer recall beside it when a reader
    answered. Cells, colour bar and its label all speak percent, so a cell's number reads off the bar."""
    import numpy as np

    plt = _plt()
    rs = sorted(rows, key=lambda r: r["tokens"])
    panels = [p for p in HEATMAP_PANELS if p[0] == "recall_by_depth" or any(r.get(p[0]) for r in rs)]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(1.6 + (1.6 + 1.1 * len(rs)) * len(panels), 2.2 + 0.38 * depths),
        squeeze=False,
    )
    first = rs[0]
    title = f"{first['haystack']} haystack, task {first['task']}: {first['needles']} needles per haystack"
    details = ", ".join(x for x in (_k_text(rs), retriever and f"retriever {retriever}") if x)
    fig.suptitle(f"{title}\n{details}" if details else title, fontsize=9)
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#dddddd")  # grey: a cell nobody measured
    im = None
    for ax, (key, what) in zip(axes[0], panels, strict=True):
        grid = np.full((depths, len(rs)), np.nan)
        for j, r in enumerate(rs):
            for b, v in (r.get(key) or {}).items():
                if v is not None and int(b) < depths:
                    grid[int(b), j] = 100 * v
        im = ax.imshow(grid, vmin=0, vmax=100, cmap=cmap, aspect="auto", origin="upper")
        for (i, j), v in np.ndenumerate(grid):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(rs)), [fmt_tokens(r["tokens"]) for r in rs])
        labels = [f"{100 * b / max(depths - 1, 1):.0f}%" for b in range(depths)] if depths > 1 else ["50%"]
        ax.set_yticks(range(depths), labels if ax is axes[0][0] else [])
        ax.set_xlabel("haystack tokens")
        if ax is axes[0][0]:
            ax.set_ylabel("needle depth (% into the haystack)")
        ax.set_title(what.replace("@k", f"@{first['k']}") if first.get("k") else what, fontsize=9)
    bar = fig.colorbar(im, ax=axes[0].tolist(), fraction=0.05)
    bar.set_label("recall (%), as printed in the cells", fontsize=8)
    return fig


def heatmaps(rows: list[dict], out_dir: str | os.PathLike, depths: int) -> list[Path]:
    """One PNG per (haystack, task, needles[, retriever]) group (`heatmap_figure`); returns the paths."""
    plt = _plt()
    multi = len({r.get("retriever") for r in rows}) > 1
    paths = []
    for (hay, task, n, ret), rs in _groups(rows).items():
        fig = heatmap_figure(rs, depths, ret)
        path = Path(out_dir) / _safe(f"heatmap_{hay}_{task}_n{n}{f'_{ret}' if multi else ''}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


COLOURS = "tab10"  # one colour per line while there are at most 10 lines (tab20 beyond)
STAGE_DASHES = ("--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")


def _lines(rows: list[dict]) -> list[tuple[str, list[dict], str | None, bool]]:
    """(label, rows, what, is final) for every line to draw; `what` is None for the final list, a stage
    name, or "answer" for the reader's answer recall.

    A retriever's stage that is the retriever itself (the bm25 retriever's "bm25" list) is its final
    line already and is not drawn twice."""
    groups = _groups(rows)
    keys = list(groups)
    vary = [len({k[i] for k in keys}) > 1 for i in range(3)]  # name a haystack/task/needles only if it varies
    out = []
    for key, rs in groups.items():
        (hay, task, n, ret) = key
        prefix = "/".join(str(x) for x, v in zip((hay, task, f"{n} needles"), vary, strict=True) if v)
        name = "/".join(x for x in (prefix, ret or "retriever") if x)
        out.append((f"{name}: final", rs, None, True))
        for st in rs[0]["recall_by_stage"]:
            if st != ret:
                out.append((f"{name}: {st} stage", rs, st, False))
        if any(r.get("answer_recall") is not None for r in rs):
            out.append((f"{name}: answer (reader)", rs, "answer", False))
    return out


def recall_vs_tokens_figure(rows: list[dict]):
    """Recall against haystack size: per retriever its final recall (solid, thick) and every stage's
    (dashed), plus the reader's answer recall. Each line has its own colour, dash and marker, and lines
    are offset sideways a little so that lines with equal values (every stage at 100%) all stay visible.
    The x axis is logarithmic with the haystack sizes as its tick labels."""
    plt = _plt()
    lines = _lines(rows)
    cmap = plt.get_cmap(COLOURS if len(lines) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(8.5, 4.4))
    sizes = sorted({r["tokens"] for r in rows})
    step = 0.018 if len(lines) > 1 else 0.0  # sideways offset between lines, in decades
    for i, (label, rs, stage, final) in enumerate(lines):
        shift = 10 ** (step * (i - (len(lines) - 1) / 2))
        xs = [r["tokens"] * shift for r in rs]
        if stage is None:
            ys = [r["retrieval_recall"] for r in rs]
        elif stage == "answer":
            ys = [r.get("answer_recall") for r in rs]
        else:
            ys = [r["recall_by_stage"].get(stage) for r in rs]
        ax.plot(
            xs,
            [float("nan") if y is None else 100 * y for y in ys],  # percent; a gap where not measured
            color=cmap(i % cmap.N),
            ls="-" if final else STAGE_DASHES[i % len(STAGE_DASHES)],
            lw=2.2 if final else 1.3,
            marker=MARKERS[i % len(MARKERS)],
            ms=7 if final else 5,
            mfc="none" if final else None,
            zorder=3 if final else 2,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xticks(sizes, [fmt_tokens(t) for t in sizes])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    lo, hi = min(sizes), max(sizes)
    ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("haystack size (tokens; lines offset sideways so equal values stay visible)")
    ax.set_ylabel("recall (%): retrieval recall@k, or answer recall")
    groups = _groups(rows)
    first = next(iter(groups))
    what = (
        f"{first[0]} haystack, task {first[1]}, {first[2]} needles"
        if len({k[:3] for k in groups}) == 1
        else "every haystack and task"
    )
    k = _k_text(rows)
    ax.set_title(f"Retrieval recall vs haystack size: {what}{f', {k}' if k else ''}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def recall_vs_tokens(rows: list[dict], out_dir: str | os.PathLike) -> Path:
    """recall_vs_tokens.png (`recall_vs_tokens_figure`); returns its path."""
    plt = _plt()
    fig = recall_vs_tokens_figure(rows)
    path = Path(out_dir) / "recall_vs_tokens.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
