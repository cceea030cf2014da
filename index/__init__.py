"""index: corpus -> tokens -> 64-token chunks -> BM25 + static FAISS (+ dense) shards, with a manifest.

from index import Index
idx = Index.open("my-index")
hits = idx.search_bm25("what is a magic number", k=10)
"""

from index.store import Index

__all__ = ["Index"]
