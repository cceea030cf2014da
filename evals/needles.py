"""RULER-style needles, questions and expected answers, all deterministic from a seed.

A *needle* is one sentence hidden in the haystack; a *sample* is one question with the needles it
needs and the strings a correct answer contains. Tasks (how `n` needles become samples):

- `single`     n keys, one needle and one question each (Gemini-style many needles when n > 1);
- `multikey`   as single, plus `distractors_per_needle` needles of the same form with other keys;
- `multivalue` n needles grouped `values_per_key` to a key; one question per key asks for all values;
- `multiquery` n keys; one question asks `queries_per_question` keys at once;
- `multihop`   n chains `VAR A = 12345. VAR B = VAR A. ...` of `hops` hops (hops + 1 needles each);
               the question asks the value of the last variable;
- `nonliteral` n needles whose question shares no content word with the needle (paraphrase pairs
               written for this project, see `evals.nonliteral`);
- `twohop`     n questions, two facts each: the first names a bridge person, the second that
               person's superior, whom the question asks for (`evals.entities`; `form` 0 or 1).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from evals import entities, nonliteral
from evals.words import ADJECTIVES, NOUNS, UPPER

TASKS = ("single", "multikey", "multivalue", "multiquery", "multihop", "nonliteral", "twohop")
KEY_TYPES = ("word", "number", "uuid")
_KIND = {"word": "words", "number": "numbers", "uuid": "uuids"}


@dataclass(frozen=True)
class NeedleConfig:
    task: str = "single"  # one of TASKS: how needles become questions
    key_type: str = "word"  # word | number | uuid: what the key looks like
    value_type: str = "number"  # word | number | uuid: what the value looks like
    values_per_key: int = 4  # multivalue: needles (values) per key
    queries_per_question: int = 4  # multiquery: keys asked in one question
    hops: int = 4  # multihop: assignments after the first (4 hops = 5 needles per chain)
    distractors_per_needle: int = 3  # multikey: extra needles of the same form with other keys
    form: int = 0  # twohop: surface form of facts and questions (0 or 1; pick settings on one, report the other; 2, 3 train the reader)

    def check(self) -> NeedleConfig:
        """Raise ValueError with a one-line message if a field is out of range."""
        if self.task not in TASKS:
            raise ValueError(f"unknown needle task {self.task!r} (known: {', '.join(TASKS)})")
        for name in ("key_type", "value_type"):
            if getattr(self, name) not in KEY_TYPES:
                raise ValueError(f"{name} must be one of {', '.join(KEY_TYPES)}, got {getattr(self, name)!r}")
        for name in ("values_per_key", "queries_per_question", "hops"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.distractors_per_needle < 0:
            raise ValueError("distractors_per_needle must be >= 0")
        if self.form not in (0, 1, 2, 3):  # 2, 3: the reader's training-only wordings (evals/entities.py)
            raise ValueError(f"form must be 0 or 1 (2, 3: training wordings), got {self.form}")
        return self


@dataclass(frozen=True)
class Needle:
    needle_id: str  # unique within a haystack, e.g. "n0007"
    sample_id: str  # the sample whose question needs it ("" for distractors)
    task: str  # the task that made it, or "distractor"
    key: str  # the key (variable name for multihop, "" for nonliteral)
    value: str  # the value the sentence states
    text: str  # the full needle sentence inserted into the haystack


@dataclass(frozen=True)
class Sample:
    sample_id: str  # unique within a haystack, e.g. "q0003"
    task: str  # one of TASKS
    question: str  # what the retriever is asked
    answers: tuple[str, ...]  # strings a correct answer contains (RULER's metric)
    needle_ids: tuple[str, ...]  # needles the question needs, in order (chain order for multihop)
    meta: dict = field(default_factory=dict)  # task details (multihop: the variable chain)


@dataclass(frozen=True)
class NeedleSet:
    samples: tuple[Sample, ...]  # the questions
    needles: tuple[Needle, ...]  # every needle to insert (true needles first, then multikey distractors)
    true_keys: frozenset[str]  # keys asked about; distractors never use them

    def asked(self) -> list[Needle]:
        """The needles some question needs (not distractors)."""
        return [nd for nd in self.needles if nd.task != "distractor"]


def _rng(seed: int, salt: str) -> random.Random:
    return random.Random(f"retro-evals|{seed}|{salt}")


def make_token(rng: random.Random, kind: str) -> str:
    """One key or value of `kind` (word | number | uuid) drawn from `rng`."""
    if kind == "word":
        return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    if kind == "number":
        return str(rng.randrange(1_000_000, 10_000_000))
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_value(rng: random.Random, kind: str) -> str:
    """A value: words are fused `adjectivenoun` so they read as one word; numbers and uuids as keys."""
    if kind == "word":
        return f"{rng.choice(ADJECTIVES)}{rng.choice(NOUNS)}"
    return make_token(rng, kind)


def needle_sentence(key: str, value: str, value_type: str) -> str:
    """RULER's needle form: 'One of the special magic {kind} for {key} is: {value}.'"""
    return f"One of the special magic {_KIND[value_type]} for {key} is: {value}."


def _unique(rng: random.Random, kind: str, used: set[str], maker=make_token) -> str:
    for _ in range(10_000):
        tok = maker(rng, kind)
        if tok not in used:
            used.add(tok)
            return tok
    raise ValueError(f"ran out of distinct {kind} keys/values; ask for fewer needles")


def _var(rng: random.Random, used: set[str]) -> str:
    for _ in range(10_000):
        name = "".join(rng.choice(UPPER) for _ in range(5))
        if name not in used:
            used.add(name)
            return name
    raise ValueError("ran out of variable names")


def make_needles(cfg: NeedleConfig, n: int, seed: int) -> NeedleSet:
    """The needles and questions of one haystack: `n` needles (chains for multihop) for `cfg.task`."""
    cfg.check()
    if n < 1:
        raise ValueError(f"number of needles must be >= 1, got {n}")
    rng = _rng(seed, f"needles|{cfg.task}|{cfg.key_type}|{cfg.value_type}")
    kind, one = _KIND[cfg.value_type], _KIND[cfg.value_type][:-1]
    used_keys: set[str] = set()
    used_values: set[str] = set()
    needles: list[Needle] = []
    samples: list[Sample] = []

    def add(sample_id: str, key: str, value: str, text: str) -> str:
        nid = f"n{len(needles):04d}"
        needles.append(Needle(nid, sample_id, cfg.task, key, value, text))
        return nid

    def new_kv() -> tuple[str, str]:
        key = _unique(rng, cfg.key_type, used_keys)
        return key, _unique(rng, cfg.value_type, used_values, make_value)

    if cfg.task in ("single", "multikey"):
        for i in range(n):
            sid = f"q{i:04d}"
            key, value = new_kv()
            nid = add(sid, key, value, needle_sentence(key, value, cfg.value_type))
            q = f"What is the special magic {one} for {key} mentioned in the provided text?"
            samples.append(Sample(sid, cfg.task, q, (value,), (nid,)))
    elif cfg.task == "multivalue":
        for i in range((n + cfg.values_per_key - 1) // cfg.values_per_key):
            sid = f"q{i:04d}"
            key = _unique(rng, cfg.key_type, used_keys)
            m = min(cfg.values_per_key, n - i * cfg.values_per_key)
            values = [_unique(rng, cfg.value_type, used_values, make_value) for _ in range(m)]
            ids = tuple(add(sid, key, v, needle_sentence(key, v, cfg.value_type)) for v in values)
            q = f"What are all the special magic {kind} for {key} mentioned in the provided text?"
            samples.append(Sample(sid, cfg.task, q, tuple(values), ids))
    elif cfg.task == "multiquery":
        for i in range((n + cfg.queries_per_question - 1) // cfg.queries_per_question):
            sid = f"q{i:04d}"
            m = min(cfg.queries_per_question, n - i * cfg.queries_per_question)
            kvs = [new_kv() for _ in range(m)]
            ids = tuple(add(sid, k, v, needle_sentence(k, v, cfg.value_type)) for k, v in kvs)
            keys = [k for k, _ in kvs]
            asked = keys[0] if m == 1 else ", ".join(keys[:-1]) + f" and {keys[-1]}"
            q = f"What are all the special magic {kind} for {asked} mentioned in the provided text?"
            samples.append(Sample(sid, cfg.task, q, tuple(v for _, v in kvs), ids))
    elif cfg.task == "multihop":
        for i in range(n):
            sid = f"q{i:04d}"
            names = [_var(rng, used_keys) for _ in range(cfg.hops + 1)]
            value = _unique(rng, "number", used_values, make_value)
            ids = [add(sid, names[0], value, f"VAR {names[0]} = {value}.")]
            for a, b in zip(names[:-1], names[1:], strict=True):
                ids.append(add(sid, b, value, f"VAR {b} = VAR {a}."))
            q = f"What is the value of VAR {names[-1]}?"
            samples.append(Sample(sid, cfg.task, q, (value,), tuple(ids), {"chain": names}))
    elif cfg.task == "twohop":
        for i in range(n):
            sid = f"q{i:04d}"
            f = entities.make_facts(rng, cfg.form, used_keys)
            ids = (add(sid, f.bridge, f.bridge, f.fact1), add(sid, f.bridge, f.answer, f.fact2))
            samples.append(Sample(sid, cfg.task, f.question, (f.answer,), ids, {"bridge": f.bridge}))
    else:  # nonliteral
        for i, (needle_text, question, value) in enumerate(nonliteral.make(n, rng)):
            sid = f"q{i:04d}"
            nid = add(sid, "", value, needle_text)
            samples.append(Sample(sid, cfg.task, question, (value,), (nid,)))

    true_keys = frozenset(used_keys)
    if cfg.task == "multikey":
        drng = _rng(seed, "multikey-distractors")
        for _ in range(n * cfg.distractors_per_needle):
            key = _unique(drng, cfg.key_type, used_keys)
            value = _unique(drng, cfg.value_type, used_values, make_value)
            nid = f"n{len(needles):04d}"
            needles.append(
                Needle(nid, "", "distractor", key, value, needle_sentence(key, value, cfg.value_type))
            )
    return NeedleSet(tuple(samples), tuple(needles), true_keys)


def distractor_stream(cfg: NeedleConfig, true_keys: frozenset[str], seed: int) -> Iterator[str]:
    """An endless, seeded stream of distractor sentences of the same form as `cfg`'s needles,
    never using a key in `true_keys` (multihop: unrelated `VAR X = n.` assignments)."""
    rng = _rng(seed, f"distractors|{cfg.key_type}|{cfg.value_type}|{cfg.task}")
    if cfg.task == "twohop":
        yield from entities.distractor_facts(rng, cfg.form, true_keys)
        return
    if cfg.task == "multihop":
        while True:
            name = "".join(rng.choice(UPPER) for _ in range(5))
            if name not in true_keys:
                yield f"VAR {name} = {rng.randrange(1_000_000, 10_000_000)}."
    while True:
        key = make_token(rng, cfg.key_type)
        if key not in true_keys:
            yield needle_sentence(key, make_value(rng, cfg.value_type), cfg.value_type)


def answer_span(task: str, key: str, value: str) -> str | None:
    """The part of a key/value needle a reader needs: `{key} is: {value}.` (None for multihop and
    nonliteral needles, whose whole sentence is the evidence). A straddling needle cut before its
    key leaves this span whole in the next chunk, which answers the question on its own."""
    if task in ("single", "multikey", "multivalue", "multiquery", "distractor") and key and value:
        return f"{key} is: {value}."
    return None


def needle_record(nd: Needle) -> dict:
    """A needle as a plain dict (for needles.jsonl)."""
    return dataclasses.asdict(nd)
