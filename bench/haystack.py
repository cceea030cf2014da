"""Benchmark: haystack generation throughput (tokens/s) and peak memory at two sizes.

    python bench/haystack.py                      # 1M and 20M tokens, noise + needles haystacks, 100 needles
    python bench/haystack.py --sizes 1M,100M --kinds needles

Each run is a fresh subprocess writing corpus.jsonl + needles.jsonl to a temporary folder, so its
peak RSS (ru_maxrss) is the generator's own. Tokens are approximate: characters / chars_per_token
(4.0, the generator's default; the index's tokenizer on this filler gives ~3.5, i.e. more tokens).
Target (issue 5): >= 5M tokens/s, with memory flat in haystack size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from evals.haystack import HaystackConfig, write_haystack
    from evals.needles import NeedleConfig, make_needles
    kind, tokens, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    info = write_haystack(HaystackConfig(kind=kind, tokens=tokens), make_needles(NeedleConfig(), 100, 0), out)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": dt, "chars": info["chars"], "tokens": info["approx_tokens"],
                      "peak_rss_mb": peak / 1024, "growth_mb": (peak - base) / 1024,
                      "distractors": info["distractors"]}))
""")


def run(kind: str, tokens: int) -> dict:
    """Generate one haystack in a subprocess; return its timing and memory figures."""
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(tokens), tmp], capture_output=True, text=True, check=True
        )
    return json.loads(res.stdout)


def main() -> None:
    from evals.niah import parse_list, parse_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1M,20M", help="haystack sizes in tokens")
    ap.add_argument("--kinds", default="noise,needles", help="haystack kinds")
    args = ap.parse_args()
    print(
        "| haystack | tokens | chars | seconds | tokens/s | chars/s | peak RSS MB | RSS growth MB | distractors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in parse_list(args.kinds, "kinds"):
        for tokens in parse_list(args.sizes, "sizes", parse_size):
            r = run(kind, tokens)
            print(
                f"| {kind} | {tokens:,} | {r['chars']:,} | {r['seconds']:.2f} | {r['tokens'] / r['seconds'] / 1e6:.1f}M"
                f" | {r['chars'] / r['seconds'] / 1e6:.1f}M | {r['peak_rss_mb']:.0f} | {r['growth_mb']:.1f}"
                f" | {r['distractors']:,} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
