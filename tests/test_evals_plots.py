"""The eval plots a person reads, checked on the figure objects (real matplotlib, Agg backend).

Synthetic rows in the shape `evals.scoring.summarize` writes: two retrievers (BM25 alone and the
cascade) over 128K and 1M tokens, every cascade stage at 100% like BM25, the case where lines used to
hide one another.
"""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from evals import report

matplotlib.use("Agg")
STAGES = ("bm25", "static", "expanded", "cheap", "medium", "expensive")


def _row(retriever: str, tokens: int, stages: tuple[str, ...], recall: float = 1.0) -> dict:
    return {
        "haystack": "needles",
        "task": "single",
        "retriever": retriever,
        "tokens": tokens,
        "context_tokens": int(tokens * 1.07),
        "needles": 100,
        "k": 10,
        "retrieval_recall": recall,
        "recall_by_stage": {s: recall for s in stages},
        "recall_by_depth": {"0": 1.0, "1": 0.5, "2": recall},
        "answer_by_depth": {"0": 0.9, "1": 0.8, "2": 0.93},
        "answer_recall": 0.9,
    }


@pytest.fixture
def rows():
    return [
        _row(ret, t, stages)
        for (ret, stages), t in itertools.product(
            [("bm25", ("bm25",)), ("cascade", STAGES)], (128_000, 1_000_000)
        )
    ]


def test_heatmap_colour_bar_and_cells_speak_percent(rows):
    import matplotlib.pyplot as plt

    fig = report.heatmap_figure(
        [r for r in rows if r["retriever"] == "cascade"], depths=3, retriever="cascade"
    )
    try:
        bar_ax = fig.axes[-1]  # the colour bar comes last
        images = [im for ax in fig.axes[:-1] for im in ax.get_images()]
        assert len(images) == 2  # retrieval recall and, beside it, the reader's answer recall
        assert all(im.get_clim() == (0, 100) for im in images)
        assert "%" in bar_ax.get_ylabel() and bar_ax.get_ylim() == (0.0, 100.0)
        cells = [float(t.get_text()) for ax in fig.axes[:-1] for t in ax.texts]
        assert {100.0, 50.0, 90.0} <= set(cells) and max(cells) <= 100  # same scale as the bar
        title = fig._suptitle.get_text()
        assert "100 needles per haystack" in title and "k = 10" in title and "cascade" in title
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["128K", "1M"]
        assert fig.axes[0].get_title() == "retrieval recall@10"
    finally:
        plt.close(fig)


def test_recall_lines_can_be_told_apart(rows):
    import matplotlib.pyplot as plt

    fig = report.recall_vs_tokens_figure(rows)
    try:
        (ax,) = [a for a in fig.axes if a.get_lines()]
        lines = ax.get_lines()
        labels = [ln.get_label() for ln in lines]
        # bm25 final, cascade final + six stages, and each retriever's answer recall
        assert len(lines) == 2 + len(STAGES) + 2 and len(set(labels)) == len(labels)
        assert "bm25: final" in labels and "cascade: bm25 stage" in labels
        assert len({ln.get_color() for ln in lines}) == len(lines)  # a colour each
        styles = {(ln.get_linestyle(), ln.get_marker()) for ln in lines}
        assert len(styles) == len(lines)  # and a dash + marker each
        # equal values (every stage at 100%) never sit exactly on one another: BM25 stays visible
        xs = [tuple(ln.get_xdata()) for ln in lines]
        assert len(set(xs)) == len(xs)
        bm25 = lines[labels.index("bm25: final")]
        assert list(bm25.get_ydata()) == [100.0, 100.0]  # percent, like the heatmaps
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["128K", "1M"]
        title = ax.get_title()
        assert "haystack size" in title and "100 needles" in title and "k = 10" in title
        assert ax.get_legend() is not None
    finally:
        plt.close(fig)


def test_writers_still_write_pngs(rows, tmp_path):
    paths = report.heatmaps(rows, tmp_path, depths=3) + [report.recall_vs_tokens(rows, tmp_path)]
    assert sorted(p.name for p in paths) == [
        "heatmap_needles_single_n100_bm25.png",
        "heatmap_needles_single_n100_cascade.png",
        "recall_vs_tokens.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
