"""Are variable chains lost in the index or in the reader? Search each hop with the *right* bridge.

    python bench/chain_retrieval.py [--tokens 1000000] [--chains 30] [--seed 0] [-k 10]

Writes a `needles` haystack of 4-hop chains (evals/haystack.py, the generator the niah eval uses),
indexes it (BM25, dense off) into a temporary folder, and for each link after the first searches what
`ask --hops` searches when the reader named the bridge right, `hop_question(question, [bridge])`,
counting the hops whose link (`VAR <bridge> = ...`) is in BM25's top k. All found means a chain that
`ask` does not complete was lost by the reader, not by the index.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.haystack import HaystackConfig, write_haystack  # noqa: E402
from evals.needles import NeedleConfig, make_needles  # noqa: E402
from index import Index  # noqa: E402
from index.build import BuildConfig, build_index  # noqa: E402
from pipelines.answer import hop_question  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1_000_000, help="haystack size")
    ap.add_argument("--chains", type=int, default=30, help="chains searched (of 100 in the haystack)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args(argv)
    nc = NeedleConfig("multihop", hops=4)
    ns = make_needles(nc, 100, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_haystack(
            HaystackConfig(kind="needles", tokens=args.tokens, seed=args.seed), ns, work / "hay", nc
        )
        build_index(work / "hay" / "corpus.jsonl", work / "index", BuildConfig(dense="off"), quiet=True)
        idx = Index.open(work / "index")
        found = total = 0
        for smp in ns.samples[: args.chains]:
            names = smp.meta["chain"][::-1]  # the asked variable first
            for name in names[1:]:
                ids, _ = idx.search_bm25(hop_question(smp.question, [f"VAR {name}"]), args.k)
                texts = idx.neighbour_text([int(i) for i in np.asarray(ids).reshape(-1) if i >= 0])
                found += any(f"VAR {name} = " in t for t in texts)
                total += 1
    print(
        f"{found} of {total} hops ({args.chains} chains, {args.tokens:,} tokens, seed {args.seed}): "
        f"the bridge's link is in BM25's top {args.k}"
    )


if __name__ == "__main__":
    main()
