"""The reader: RETRO answers a question from the cascade's top-k neighbours, cites them, or abstains.

    from retro.reader import Reader
    r = Reader.load()                       # the shipped checkpoint (retro/assets/reader/)
    a = r.answer("What is the special magic number for lemon-parrot mentioned in the provided text?",
                 neighbour_texts)           # cascade neighbours: chunk + continuation text, best first
    a.text, a.abstained, a.citations        # "4829481", False, [{"neighbour": 0, "char_start": .., ...}]

Layout and network: retro/reader_layout.py, retro/reader_model.py (RETRO + a pointer copy head). The
question ends chunk u; the neighbours, re-tokenized with the reader's own tokenizer and cut to R tokens,
are chunk u's retrieval and are read through CCA (and the copy head) by the answer tokens in chunk
u+1 (and u+2, ... with the same neighbours encoded again against that chunk).

Decoding is greedy (deterministic) with a KV cache (Retro.decode), one attending chunk at a time:
- "constrained": every emitted part must be a token sequence that occurs in some neighbour as whole
  words; at each step only the tokens continuing such a sequence, <next> / </s> (after one token, where
  the sequence ends before the start of a word: never "482917" of "4829175", even where a neighbour,
  a window of its document, ends mid-number) and
  <abstain> (first step only) are allowed, and the model's best allowed token is taken;
- "free": the argmax over the whole vocabulary. A part that does not occur verbatim in the evidence
  is dropped (never invent a string); if none is left the reader abstains.
An answer is the model's own generation in both modes; citations are where each part occurs.

Shapes: B batch (1), K neighbours, R retrieved length, P pointer dim, V vocab, S cache length.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from retro.reader_layout import (
    EOS,
    PAD,
    ReaderConfig,
    ReaderTokenizer,
    mark_matches,
    neighbour_block,
    question_prefix,
)
from retro.reader_model import ReaderNet

ASSETS = Path(__file__).parent / "assets" / "reader"
MODES = ("constrained", "free")
K_BUCKETS = (2, 4, 10, 20, 40)  # neighbour counts are padded up to one of these (one compile each)
# When the greedy answer is excluded (`answer(exclude=...)`), <abstain> competes with the other answers
# at its log-prob minus this many nats: the model chose to answer, and the excluded answer's mass was
# answer mass. Chosen on the dev split's chain hops (seeds 3000+) whose greedy answer was an earlier
# bridge: right in 18 of 38 at 0 nats, 29 at 3 and at 4, 28 at 6 (bench/reader_exclude.py).
EXCLUDE_MARGIN = 3.0


@dataclass(frozen=True)
class ReaderAnswer:
    """What the reader returns for one question."""

    text: str | None  # None when abstained; parts of a multi-part answer joined by ", "
    abstained: bool  # the reader found no answer in the evidence
    citations: list[dict]  # [{"neighbour": i, "char_start": a, "char_end": b}] where a part occurs
    mode: str  # "constrained" | "free"
    latency_ms: float  # wall time of answer()
    logprob: float  # summed log-prob of the generated tokens
    parts: tuple[str, ...] = ()  # the answer's parts (multivalue / multiquery answers have several)
    abstain_logprob: float = 0.0  # the model's log-prob of <abstain> as the first token (its doubt)


class Reader:
    """A loaded reader checkpoint: config.json, tokenizer.model, weights.npz in one folder."""

    k_buckets = K_BUCKETS  # the neighbour counts it compiles for: `warm(k)` each to compile them all

    def __init__(self, net: ReaderNet, cfg: ReaderConfig, tok: ReaderTokenizer):
        """Use `Reader.load`."""
        self.net, self.cfg, self.tok = net, cfg, tok
        self.name = "retro-reader"  # `load` adds the checkpoint folder and its weights' sha256
        graphdef, state = nnx.split(net)

        def run(state, tokens, start, cache, nb, keys):
            """keys: (pointer keys [B, K*R, P], neighbour ids [B, K*R]) of the current chunk (all padding
            before the first chunk with neighbours: its output is then not used)."""
            net = nnx.merge(graphdef, state)
            logits, cache = net.retro.decode(tokens, start, cache, nb)
            inter = nnx.pop(net.retro, nnx.Intermediate)
            h = inter["reader_h"][0][:, -1]  # [B, D]
            if nb is not None:
                flat = nb.reshape(nb.shape[0], -1) % cfg.vocab_size  # token ids without the match flag
                keys = (net.copy.keys(inter["reader_enc"][0][:, 0]), flat)
            lpv = jax.nn.log_softmax(logits[:, -1], -1)  # [B, V]
            pk, flat = keys
            a = jax.nn.softmax(net.copy.scores(h[:, None], pk, flat != PAD)[:, 0], -1)  # [B, K*R]
            pc = jnp.zeros_like(lpv).at[jnp.arange(flat.shape[0])[:, None], flat].add(a)
            log_g, log_1g = net.copy.gate(h)
            mix = jnp.logaddexp(log_1g[:, None] + lpv, log_g[:, None] + jnp.log(pc + 1e-30))
            return mix, keys, cache

        self._state = state
        self._run = jax.jit(run, donate_argnums=(3,))

    @classmethod
    def load(cls, path: str | None = None) -> Reader:
        """Load a checkpoint folder (None = the shipped one, retro/assets/reader/); offline."""
        from retro.reader_train import load_weights

        folder = Path(path) if path is not None else ASSETS
        for name in ("config.json", "tokenizer.model", "weights.npz"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: reader checkpoint file missing")
        cfg = ReaderConfig.from_dict(json.loads((folder / "config.json").read_text()))
        tok = ReaderTokenizer((folder / "tokenizer.model").read_bytes())
        net = nnx.eval_shape(
            lambda: ReaderNet(
                cfg.model_config(), cfg.copy_dim, rngs=nnx.Rngs(0), match_levels=cfg.match_levels
            )
        )
        load_weights(net, folder / "weights.npz")
        reader = cls(net, cfg, tok)
        digest = hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()[:12]
        reader.name = f"retro-reader:{folder.name}@{digest}"  # what answered, in every answer object
        return reader

    def warm(self, k: int = 10) -> None:
        """Compile every decode step `answer` can run with k neighbours now (~8-15 s on 2 cores), so that
        compilation stays out of the first answer's latency, as `Cascade.warm` keeps lazy loads out of
        the stages'.

        The steps are called directly, in the order `_generate` reaches them (the pointer keys an earlier
        call returns are part of a later call's signature). An earlier version answered two made-up
        questions instead; when the reader abstained on them the one-token decode step never compiled,
        and the first real answer paid 14 s for it (a question on the 128K soak index, 2026-12-01)."""
        if not isinstance(k, int) or not 1 <= k <= K_BUCKETS[-1]:
            raise ValueError(f"k must be an int in 1..{K_BUCKETS[-1]}, got {k!r}")
        cfg, m = self.cfg, self.cfg.chunk_len
        kb = next(b for b in K_BUCKETS if b >= k)
        nb = jnp.full((1, kb, cfg.retrieved_len), PAD, jnp.int32)
        cache = self.net.retro.init_cache(1, (cfg.max_question_chunks + cfg.max_answer_chunks) * m, kb)
        keys = (
            jnp.zeros((1, kb * cfg.retrieved_len, cfg.copy_dim)),
            jnp.zeros((1, kb * cfg.retrieved_len), jnp.int32),
        )
        # prefill: first m-1 tokens, whole question chunks before u, <sep> (reads the neighbours)
        for n in (m - 1, m):
            lp, _, cache = self._call([PAD] * n, 0, cache, None, keys)
        lp, keys, cache = self._call([PAD], 0, cache, nb, keys)
        # decode: one token inside a chunk, and one at a chunk boundary (the neighbours again)
        lp, keys, cache = self._call([PAD], 0, cache, None, keys)
        lp, keys, cache = self._call([PAD], 0, cache, nb, keys)
        jax.block_until_ready(lp)

    # ------------------------------------------------------------------ answering
    def answer(
        self,
        question: str,
        neighbours: list[str],
        mode: str = "constrained",
        max_new_tokens: int = 159,
        exclude: Sequence[str] = (),
    ) -> ReaderAnswer:
        """Answer `question` from `neighbours` (texts, best first); see the module doc for the modes.

        `exclude`: answers the caller has ruled out (a chain's earlier bridges: a chain never revisits a
        node). When the greedy answer has an excluded part, the next most likely generations are tried,
        best first (`_next_best`), and <abstain> competes with them."""
        t0 = time.perf_counter()
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if not isinstance(neighbours, list) or not all(isinstance(n, str) for n in neighbours):
            raise ValueError("neighbours must be a list of strings")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError("max_new_tokens must be a positive int")
        if len(neighbours) > K_BUCKETS[-1]:
            raise ValueError(f"neighbours: at most {K_BUCKETS[-1]} are read, got {len(neighbours)}")
        if (
            isinstance(exclude, str)
            or not isinstance(exclude, Sequence)
            or not all(isinstance(x, str) for x in exclude)
        ):
            raise ValueError("exclude must be a sequence of strings")
        nb_ids = [self.tok.encode(n)[: self.cfg.retrieved_len] for n in neighbours]
        if not any(nb_ids):  # nothing to read: the answer cannot be in the evidence
            return ReaderAnswer(None, True, [], mode, (time.perf_counter() - t0) * 1e3, 0.0)
        ids, logprob, doubt, steps = self._generate(question, nb_ids, mode, max_new_tokens)
        parts = self._parts(ids)
        if exclude and parts and set(parts) & set(exclude):
            ids, logprob = self._next_best(question, nb_ids, mode, max_new_tokens, ids, steps, set(exclude))
            parts = self._parts(ids)
        if parts is None:
            return ReaderAnswer(
                None, True, [], mode, (time.perf_counter() - t0) * 1e3, logprob, abstain_logprob=doubt
            )
        cites, kept = [], []
        for p in parts:
            c = cite(p, neighbours)
            if c and p not in kept:
                kept.append(p)
                cites += c
        if not kept:
            return ReaderAnswer(
                None, True, [], mode, (time.perf_counter() - t0) * 1e3, logprob, abstain_logprob=doubt
            )
        ms = (time.perf_counter() - t0) * 1e3
        return ReaderAnswer(
            ", ".join(kept), False, cites, mode, ms, logprob, tuple(kept), abstain_logprob=doubt
        )

    def _parts(self, ids: list[int]) -> list[str] | None:
        """Generated ids -> answer parts (None = abstained)."""
        if not ids or ids[0] == self.tok.abstain:
            return None
        parts, cur = [], []
        for t in [*ids, self.tok.next]:
            if t == self.tok.next:
                text = self.tok.decode(cur).strip().rstrip(".,;:").rstrip()  # no sentence punctuation
                if text:
                    parts.append(text)
                cur = []
            elif t not in (EOS, self.tok.abstain):
                cur.append(t)
        return parts or None

    def _next_best(self, question, nb_ids, mode, max_new, ids, steps, exclude: set[str], tries: int = 4):
        """The most likely generation none of whose parts is in `exclude`, by best-first search: each
        decoded generation is a finished candidate at its summed log-prob and offers its deviations
        (its first d tokens, then another allowed token at step d, greedy after that) at the log-prob of
        that prefix, an upper bound of what decoding it can give; the best item is taken next, a
        deviation is decoded (at most `tries` more decodes, ~60 ms each at k = 10), and the first
        finished candidate taken that is not excluded is the answer. <abstain> is one of the first
        step's deviations, finished, at EXCLUDE_MARGIN nats less than its log-prob.

        Why: a chain's hop often answers a node it has already visited (the dev split's variable
        chains: 17 of the 20 wrong hops of 80 named an earlier bridge, read backwards through the link
        that holds the latest one)."""
        heap: list[tuple[float, int, tuple[int, ...], bool]] = []
        order = 0

        def push(score: float, seq: tuple[int, ...], done: bool) -> None:
            nonlocal order
            order += 1
            heapq.heappush(heap, (-score, order, seq, done))

        fixed, decodes = 0, 0  # the first `fixed` tokens of the latest generation were forced
        while True:
            ext = [*ids, EOS] if len(ids) < len(steps) else list(ids)  # ids ended by </s>
            head = 0.0
            for d, (t, lp) in enumerate(zip(ext, steps, strict=False)):
                if d >= fixed:
                    for alt in np.argsort(lp)[::-1][:3]:  # the three best other tokens at step d
                        alt = int(alt)
                        if alt != t and np.isfinite(lp[alt]):
                            if alt == self.tok.abstain:
                                push(head + float(lp[alt]) - EXCLUDE_MARGIN, (alt,), True)
                            else:
                                push(head + float(lp[alt]), (*ext[:d], alt), False)
                head += float(lp[t])
            if decodes:  # the generation just decoded, finished (the greedy one was excluded)
                push(head, tuple(ids), True)
            while heap:
                neg, _, seq, done = heapq.heappop(heap)
                if not done:
                    break
                parts = self._parts(list(seq))
                if not parts or not set(parts) & exclude:
                    return list(seq), -neg
            else:
                return [self.tok.abstain], 0.0
            if decodes == tries:
                return [self.tok.abstain], 0.0
            ids, _, _, steps = self._generate(question, nb_ids, mode, max_new, seq)
            fixed, decodes = len(seq), decodes + 1

    def _generate(
        self, question: str, nb_ids: list[list[int]], mode: str, max_new: int, forced: tuple[int, ...] = ()
    ):
        """Greedy decoding after the `forced` first tokens -> (generated ids without </s>, summed
        log-prob, first-step log-prob of <abstain>, each step's log-probs over the allowed tokens)."""
        cfg, m = self.cfg, self.cfg.chunk_len
        k = next(b for b in K_BUCKETS if b >= len(nb_ids))
        q_ids = self.tok.encode(question)
        block = mark_matches(
            neighbour_block(nb_ids, k, cfg.retrieved_len), q_ids, cfg.vocab_size, cfg.match_levels
        )
        nb = jnp.asarray(block)[None]  # [1, K, R]
        prefix = question_prefix(q_ids, cfg)
        max_new = min(max_new, cfg.max_answer_chunks * m - 1)
        total = (cfg.max_question_chunks + cfg.max_answer_chunks) * m
        cache = self.net.retro.init_cache(1, total, k)
        u = len(prefix) // m - 1
        tokens = list(prefix)
        keys = (
            jnp.zeros((1, k * cfg.retrieved_len, cfg.copy_dim)),
            jnp.zeros((1, k * cfg.retrieved_len), jnp.int32),
        )
        p = 0
        while p < len(prefix):  # prefill, one attending chunk at a time
            q = min(len(prefix), m - 1 if p < m - 1 else p + m)
            chunk = (p - (m - 1)) // m if p >= m - 1 else -1
            use = nb if chunk >= u else None
            lp, keys, cache = self._call(tokens[p:q], p, cache, use, keys)
            p = q
        allowed = Constraint(nb_ids, self.tok) if mode == "constrained" else None
        out, total_lp, doubt, steps = [], 0.0, None, []
        for i in range(max_new):
            lp = np.asarray(lp[0])
            if doubt is None:
                doubt = float(lp[self.tok.abstain])
            if allowed is not None:
                mask = allowed.mask(len(lp))
                lp = np.where(mask, lp, -np.inf)
            steps.append(lp)
            t = forced[i] if i < len(forced) else int(np.argmax(lp))
            total_lp += float(lp[t])
            if t == EOS:
                break
            out.append(t)
            if t == self.tok.abstain:
                break
            if allowed is not None:
                allowed.advance(t)
            at_boundary = p >= m - 1 and (p - (m - 1)) % m == 0
            lp, keys, cache = self._call([t], p, cache, nb if at_boundary else None, keys)
            p += 1
        return out, total_lp, doubt, steps

    def _call(self, toks: list[int], start: int, cache: dict, nb, keys):
        x = jnp.asarray(toks, jnp.int32)[None]
        return self._run(self._state, x, jnp.int32(start), cache, nb, keys)


class Constraint:
    """Copy constraint: the current part must be a token sequence occurring in some neighbour, and
    stays in one sentence: after a piece that ends a sentence ("." "?" "!"), a piece that starts a new
    word may not follow ("3.14" and "v1.2" go on; "Mensah. juggles" does not). At 1M tokens the
    stage-6 reader copied "Jonas Mensah. juggles" for "Jonas Mensah" (two-hop, seed 0)."""

    def __init__(self, nb_ids: list[list[int]], tok: ReaderTokenizer):
        """nb_ids: re-tokenized neighbours (as the model reads them)."""
        rows = [np.asarray([*ids, -1], np.int64) for ids in nb_ids if ids]
        self.flat = np.concatenate(rows) if rows else np.full(1, -1)
        # positions a part may end before: a token that starts a new word. A neighbour's end is not one:
        # neighbours are windows of a document (and cut to R tokens), so they may end mid-number.
        self.boundary = (self.flat >= 0) & ~tok.continues[np.maximum(self.flat, 0)]
        self.tok = tok
        self.first = True  # no token emitted yet: <abstain> allowed
        self.reset()

    def reset(self) -> None:
        """Start a new part: any neighbour position may begin it."""
        self.active = self.flat >= 0
        self.depth = 0
        self.ends = False
        self.after_sentence = False  # the last piece ended a sentence

    def mask(self, v: int) -> np.ndarray:
        """Allowed next tokens: bool [V]."""
        ok = np.zeros(v, bool)
        ok[np.unique(self.flat[self.active])] = True
        if self.after_sentence:
            ok &= ~self.tok.starts_word[:v]
        if self.first:
            ok[self.tok.abstain] = True
        if self.depth and self.ends:
            ok[EOS] = ok[self.tok.next] = True
        return ok

    def advance(self, t: int) -> None:
        """Consume the emitted token t."""
        self.first = False
        if t == self.tok.next:
            self.reset()
            return
        self.after_sentence = bool(self.tok.ends_sentence[t])
        hit = np.roll(self.active & (self.flat == t), 1)
        self.ends = bool((hit & self.boundary).any())  # the part so far is whole words somewhere
        self.active = hit & (self.flat >= 0)
        self.depth += 1


def cite(part: str, neighbours: list[str]) -> list[dict]:
    """Where `part` occurs: the first occurrence in each neighbour (whitespace runs match any run)."""
    out = []
    for i, text in enumerate(neighbours):
        a = text.find(part)
        if a < 0:
            a, b = _loose_find(text, part)
        else:
            b = a + len(part)
        if a >= 0:
            out.append({"neighbour": i, "char_start": a, "char_end": b})
    return out


def _loose_find(text: str, part: str) -> tuple[int, int]:
    """Find `part` in `text` treating any whitespace run as one space (sentencepiece normalises runs)."""
    import re

    words = part.split()
    if not words:
        return -1, -1
    m = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (m.start(), m.end()) if m else (-1, -1)
