"""Reports a person reads: the markdown table, PNG heatmaps (depth x length) and recall-vs-tokens.

Matplotlib runs on the Agg backend (no display needed). Every writer returns the paths it wrote.
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


def heatmaps(rows: list[dict], out_dir: str | os.PathLike, depths: int) -> list[Path]:
    """One PNG per (haystack, task, needles): recall per depth bucket (y) and haystack size (x), with the
    reader's answer recall in a panel beside it when a reader answered."""
    import numpy as np

    plt = _plt()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    multi = len({r.get("retriever") for r in rows}) > 1
    for r in rows:
        groups[(r["haystack"], r["task"], r["needles"], r.get("retriever") or "")].append(r)
    paths = []
    for (hay, task, n, ret), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["tokens"])
        panels = [("recall_by_depth", "recall@k")]
        if any(r.get("answer_by_depth") for r in rs):  # answers beside retrieval when a reader ran
            panels.append(("answer_by_depth", "answer recall"))
        fig, axes = plt.subplots(
            1,
            len(panels),
            figsize=(1.2 + (1.6 + 1.1 * len(rs)) * len(panels), 1.8 + 0.38 * depths),
            squeeze=False,
        )
        fig.suptitle(f"{hay} / {task} / {n} needles{f' / {ret}' if multi else ''}", fontsize=9)
        for ax, (key, what) in zip(axes[0], panels, strict=True):
            grid = np.full((depths, len(rs)), np.nan)
            for j, r in enumerate(rs):
                for b, v in (r.get(key) or {}).items():
                    if int(b) < depths:
                        grid[int(b), j] = v
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(rs)), [fmt_tokens(r["tokens"]) for r in rs])
            labels = (
                [f"{100 * b / max(depths - 1, 1):.0f}%" for b in range(depths)] if depths > 1 else ["50%"]
            )
            ax.set_yticks(range(depths), labels if ax is axes[0][0] else [])
            ax.set_xlabel("haystack tokens")
            if ax is axes[0][0]:
                ax.set_ylabel("needle depth")
            ax.set_title(what, fontsize=9)
        fig.colorbar(im, ax=axes[0].tolist(), fraction=0.05)
        path = Path(out_dir) / _safe(f"heatmap_{hay}_{task}_n{n}{f'_{ret}' if multi else ''}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def recall_vs_tokens(rows: list[dict], out_dir: str | os.PathLike) -> Path:
    """One PNG: final recall (solid) and each stage's recall (dashed) against haystack size."""
    plt = _plt()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["haystack"], r["task"], r["needles"], r.get("retriever") or "")].append(r)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (hay, task, n, ret), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["tokens"])
        if ret and len({g[3] for g in groups}) > 1:
            task = f"{task}/{ret}"
        xs = [r["context_tokens"] or r["tokens"] for r in rs]
        line = ax.plot(xs, [r["retrieval_recall"] for r in rs], marker="o", label=f"{hay}/{task}/{n} final")[
            0
        ]
        for st in rs[0]["recall_by_stage"]:
            ax.plot(
                xs,
                [r["recall_by_stage"].get(st) for r in rs],
                ls="--",
                marker=".",
                alpha=0.6,
                color=line.get_color(),
                label=f"{hay}/{task}/{n} {st}",
            )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("haystack tokens (index tokenizer)")
    ax.set_ylabel("per-needle retrieval recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(out_dir) / "recall_vs_tokens.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
