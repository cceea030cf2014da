"""The reader's config, tokenizer and sequence layout (see retro/reader_model.py for the layout picture).

The reader ships its own sentencepiece tokenizer (unigram, 2,048 pieces, split_digits, byte_fallback),
trained on the reader's training questions and neighbours: every digit is its own piece, so any number or
uuid is copyable piece by piece, and neighbour text is re-tokenized with it whatever tokenizer the
index used. Special pieces: <pad>=0 <unk>=1 <s>=2 </s>=3 and <sep> (ends the question), <abstain>
(the whole answer when the evidence lacks it), <next> (between the parts of a multi-part answer).

Shapes: C chunks, M chunk length, K neighbours, R retrieved length.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np

from retro.model_config import ModelConfig

SPECIALS = ("<sep>", "<abstain>", "<next>")
PAD, UNK, BOS, EOS = 0, 1, 2, 3


@dataclass(frozen=True)
class ReaderConfig:
    """The reader network and its layout (shipped as config.json next to the weights)."""

    vocab_size: int = 2048  # V: reader tokenizer pieces (small: digits split, bytes as fallback)
    d_model: int = 128  # D: decoder width
    n_layers: int = 4  # decoder layers
    n_heads: int = 4  # H: heads in self-attention and CCA
    head_dim: int = 32  # per-head width
    d_ff: int = 512  # feed-forward hidden width
    enc_dim: int = 64  # De: neighbour-encoder width (the encoder sees K*R tokens: most of the FLOPs)
    enc_layers: int = 2  # encoder layers (2 in the paper)
    enc_heads: int = 2  # encoder heads
    chunk_len: int = 32  # M: reader chunk length (a question fits one chunk, a number answer one)
    retrieved_len: int = 128  # R: reader tokens kept per neighbour (measured: 99% of cascade neighbours fit)
    cca_layers: tuple[int, ...] = (2, 4)  # 1-indexed decoder layers with CCA
    copy_dim: int = 64  # P: pointer (copy head) width
    max_question_chunks: int = 4  # longer questions keep their last 4*M-2 tokens
    max_answer_chunks: int = 5  # answer budget: 5*M - 1 tokens (four uuids and separators)
    match_levels: int = 1  # exact-match feature on neighbour tokens (mark_matches): 1 = the token occurs
    # in the question; n > 1 also marks tokens inside a run of 2..n consecutive question tokens, so
    # "Irene Okafor" in a neighbour differs from "Irene Brandt" and "Tomas Okafor" (1 in checkpoints
    # before stage 6, whose config.json has no such field)

    def model_config(self) -> ModelConfig:
        """The RETRO ModelConfig of the reader network."""
        return ModelConfig(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            head_dim=self.head_dim,
            d_ff=self.d_ff,
            enc_dim=self.enc_dim,
            enc_layers=self.enc_layers,
            enc_heads=self.enc_heads,
            chunk_len=self.chunk_len,
            retrieved_len=self.retrieved_len,
            cca_layers=tuple(self.cca_layers),
            pad_id=PAD,
        ).validate()

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        d = dataclasses.asdict(self)
        d["cca_layers"] = list(self.cca_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ReaderConfig:
        """Inverse of to_dict (unknown keys are an error)."""
        d = dict(d)
        d["cca_layers"] = tuple(d.get("cca_layers", (2, 4)))
        return cls(**d)


def train_tokenizer(lines: list[str], vocab_size: int) -> bytes:
    """A sentencepiece model (bytes) trained on `lines`."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        split_digits=True,
        byte_fallback=True,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        user_defined_symbols=list(SPECIALS),
        max_sentence_length=100_000,
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    return buf.getvalue()


class ReaderTokenizer:
    """The reader's sentencepiece model plus its special ids."""

    def __init__(self, model_bytes: bytes):
        """model_bytes: a serialized sentencepiece model with the SPECIALS pieces."""
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        self.sep, self.abstain, self.next = (self.sp.piece_to_id(p) for p in SPECIALS)
        self.vocab_size = self.sp.get_piece_size()
        pieces = [self.sp.id_to_piece(i) for i in range(self.vocab_size)]
        # ids that continue the word before them (no leading space, a letter or digit first): an answer
        # may not end just before one, so a copied span is whole words ("482917" of "4829175" is not)
        self.continues = np.array([not p.startswith("▁") and p[:1].isalnum() for p in pieces], bool)
        # pieces that start a word, and pieces that end a sentence: a copied part never runs from one
        # sentence into the next ("Jonas Mensah. juggles" of "... Jonas Mensah. juggles the ...")
        self.starts_word = np.array([p.startswith("▁") for p in pieces], bool)
        self.ends_sentence = np.array([p.rstrip().endswith((".", "!", "?")) for p in pieces], bool)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no <s>/</s>)."""
        return self.sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""
        return self.sp.decode(ids)


def question_prefix(tok_q: list[int], cfg: ReaderConfig) -> list[int]:
    """<s> question <sep>, left-padded so <sep> ends a chunk: length qc*M, qc <= max_question_chunks."""
    m = cfg.chunk_len
    body = [BOS, *tok_q][-(cfg.max_question_chunks * m - 1) :]
    seq = [*body, SPECIALS_IDS["sep"]]
    qc = -(-len(seq) // m)
    return [PAD] * (qc * m - len(seq)) + seq


SPECIALS_IDS = {"sep": 4, "abstain": 5, "next": 6}  # fixed by train_tokenizer's piece order


def answer_ids(parts: list[list[int]] | None) -> list[int]:
    """Target tokens: parts joined by <next>, then </s>; None or [] = <abstain> </s>."""
    if not parts:
        return [SPECIALS_IDS["abstain"], EOS]
    out: list[int] = []
    for i, p in enumerate(parts):
        out += ([SPECIALS_IDS["next"]] if i else []) + p
    return [*out, EOS]


def neighbour_block(nbs: list[list[int]], k: int, r: int) -> np.ndarray:
    """Re-tokenized neighbours -> [K, R] int32, each cut to R tokens, padded with pad rows/tokens."""
    out = np.full((k, r), PAD, np.int32)
    for i, ids in enumerate(nbs[:k]):
        ids = ids[:r]
        out[i, : len(ids)] = ids
    return out


def mark_matches(block: np.ndarray, question_ids: list[int], v: int, levels: int = 1) -> np.ndarray:
    """[..., K, R] neighbour ids -> ids + V * level (the exact-match feature, see ReaderRetro).

    level 1: the token occurs in the question; level n (2 <= n <= `levels`): the token lies inside a
    run of n neighbour tokens that is also a run of n consecutive question tokens (a question n-gram).
    Token-level matches alone mark most pieces of a look-alike ("Irene" of "Irene Brandt" when the
    question names "Irene Okafor"; the single letters of VAR names); runs tell the named one apart.
    Padding is never marked."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    q = np.asarray(question_ids, np.int64)
    level = (np.isin(block, q) & (block != PAD)).astype(block.dtype)
    r = block.shape[-1]
    for n in range(2, min(levels, len(q), r) + 1):
        base = np.int64(v + 1)  # an n-gram as one integer: sum of token * base^i (base^3 ~ 8.6e9 fits)
        weights = base ** np.arange(n, dtype=np.int64)
        q_codes = np.lib.stride_tricks.sliding_window_view(q, n) @ weights
        win = np.lib.stride_tricks.sliding_window_view(block.astype(np.int64), n, axis=-1)  # [..., R-n+1, n]
        hit = np.isin(win @ weights, q_codes) & (win != PAD).all(-1)  # [..., R-n+1]
        covered = np.zeros(block.shape, bool)
        for i in range(n):  # a run starting at j covers j .. j+n-1
            covered[..., i : r - n + 1 + i] |= hit
        level = np.where(covered, np.maximum(level, n), level).astype(block.dtype)
    return block + v * level


def training_example(
    prefix: list[int], target: list[int], nb: np.ndarray, cfg: ReaderConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One laid-out example: tokens [L], targets [L], loss weights [L], neighbours [C, K, R].

    L = (qc + a) * M - 1 with a = ceil(len(target) / M) answer chunks; C = L // M = qc + a - 1 chunks,
    chunks >= u = qc - 1 carry `nb` [K, R], earlier ones padding. Loss only on answer tokens."""
    m = cfg.chunk_len
    qc = len(prefix) // m
    a = -(-len(target) // m)
    length = (qc + a) * m - 1
    full = [*prefix, *target]
    tokens = np.full(length, PAD, np.int32)
    targets = np.full(length, PAD, np.int32)
    weights = np.zeros(length, np.float32)
    tokens[: len(full) - 1] = full[:-1]
    targets[: len(full) - 1] = full[1:]
    weights[len(prefix) - 1 : len(full) - 1] = 1.0
    c = length // m
    nbs = np.full((c, *nb.shape), PAD, np.int32)
    nbs[qc - 1 :] = nb
    return tokens, targets, weights, nbs
