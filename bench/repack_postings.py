"""Copy an index with its BM25 postings rewritten in another layout: the same index before and after.

    python bench/repack_postings.py IDX OUT [--postings once|packed|csc] [--spans keep|narrow]

Each shard's bm25/ is rebuilt from the shard's own token ids by `index.bm25.write_bm25` (the build's
own code, with the manifest's BM25 settings), its shard.json gets the new files' sizes and sha256,
and the manifest records the layout. Every other file is copied unchanged, so two copies differ in
the BM25 postings only: what "Bytes per token by part (issue 12)" in BENCHMARKS.md compares (one
haystack, one tokenizer, one static tier). OUT is written whole or not at all (a temporary folder
renamed at the end). `--spans narrow` also rewrites each shard's chunk_span.npy as the build now
writes it (int32 when it fits, `index.shard.narrow_spans`), and `--postings keep` leaves bm25/ as
it is, so each cut can be measured alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def repack(src: Path, out: Path, postings: str, spans: str = "keep") -> dict:
    """Write OUT = IDX with every shard's BM25 postings in `postings` layout ("keep": unchanged) and
    chunk spans narrowed when `spans` is "narrow"; returns the manifest."""
    from index.bm25 import write_bm25
    from index.shard import narrow_spans, next_in_doc
    from index.store import Index
    from index.tokenizer import sha256_file
    from util.runinfo import atomic_path, atomic_write_json

    idx = Index.open(src)
    manifest = json.loads((src / "index.json").read_text())
    cfg = manifest["bm25"]
    params = {
        "k1": cfg["k1"],
        "b": cfg["b"],
        "bigrams": cfg["bigrams"],
        "compounds": cfg.get("compounds", False),
    }
    with atomic_path(out, folder=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        for entry in manifest["shards"]:
            folder = tmp / "shards" / entry["name"]
            t = time.perf_counter()
            meta = json.loads((folder / "shard.json").read_text())
            files = dict(meta["files"])
            if spans == "narrow":
                np.save(folder / "chunk_span.npy", narrow_spans(np.load(folder / "chunk_span.npy")))
                f = folder / "chunk_span.npy"
                files["chunk_span.npy"] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
            if postings != "keep":
                texts = idx.tokenizer.decode_rows(np.load(folder / "tokens.npy"))
                shutil.rmtree(folder / "bm25")
                (folder / "bm25").mkdir()
                write_bm25(
                    folder / "bm25",
                    texts,
                    next_in_doc(np.load(folder / "chunk_doc.npy")),
                    **params,
                    postings=postings,
                )
                files = {k: v for k, v in files.items() if not k.startswith("bm25/")}
                for f in sorted((folder / "bm25").iterdir()):
                    files[f"bm25/{f.name}"] = {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
            atomic_write_json(folder / "shard.json", {**meta, "files": dict(sorted(files.items()))})
            print(f"{entry['name']}: rewritten in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        if postings != "keep":
            manifest["bm25"]["postings"] = postings
            manifest["build_config"]["bm25_postings"] = postings
        atomic_write_json(tmp / "index.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path, metavar="IDX", help="index folder to copy")
    ap.add_argument("out", type=Path, metavar="OUT", help="new index folder (must not exist)")
    ap.add_argument(
        "--postings", default="once", choices=("once", "packed", "csc", "keep"), help="BM25 postings layout"
    )
    ap.add_argument(
        "--spans", default="keep", choices=("keep", "narrow"), help="chunk_span.npy as is, or int32"
    )
    args = ap.parse_args(argv)
    if not (args.index / "index.json").is_file():
        ap.error(f"IDX {args.index}: not an index folder (no index.json)")
    if args.out.exists():
        ap.error(f"OUT {args.out}: already exists")
    repack(args.index, args.out, args.postings, args.spans)
    print(f"wrote {args.out} ({args.postings} postings, {args.spans} spans)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
