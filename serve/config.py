"""What a server accepts: the bounds every request is checked against, in one frozen dataclass.

The bounds keep one request from taking the server: k and hops multiply the work of a search, a batch
multiplies that, and a body is read whole before anything checks it. The defaults fit the shipped
reader: it compiles one decode shape per neighbour bucket (2, 4, 10, 20, 40 in retro/reader.py), and
the server compiles every bucket up to `max_k` at start-up (~8 s each on 2 cores), so k = 20 costs
four compilations and no request ever compiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.query import MAX_QUERY_WORDS, WORD_CHARS


@dataclass(frozen=True)
class ServeConfig:
    """Limits and timing of `retro serve`; every limit is stated in /openapi.json."""

    max_k: int = 20  # largest k a request may ask (and never more than the index's chunks)
    max_hops: int = 4  # largest hops a request may ask
    max_batch: int = 16  # questions in one POST /v1/ask/batch
    # longest query or question in characters: MAX_QUERY_WORDS words of at most WORD_CHARS characters
    # and a space each (13,000); a query within it is still cut at MAX_QUERY_WORDS words, as in the CLI
    max_query_chars: int = MAX_QUERY_WORDS * (WORD_CHARS + 1)
    # a larger request body is refused (413) before it is parsed; a full batch of the longest ASCII
    # questions (16 x 13,000 characters, 208 KB) fits
    max_body_bytes: int = 256 * 1024
    watch_s: float = 1.0  # how often index.json is checked for a new snapshot (an append), in seconds

    def __post_init__(self) -> None:
        for name in ("max_k", "max_hops", "max_batch", "max_query_chars", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ServeConfig.{name}: must be > 0, got {getattr(self, name)}")
        if self.watch_s <= 0:
            raise ValueError(f"ServeConfig.watch_s: must be > 0, got {self.watch_s}")
