"""Two-hop entity questions: one fact names a bridge entity, a second fact about that entity holds
the answer, and the question names neither the bridge nor the answer.

    fact 1   "Shipment KX-48213 is carried by the courier Mara Lindqvist."
    fact 2   "The courier Mara Lindqvist reports to the supervisor Tomas Okafor."
    question "Who supervises the courier who carries shipment KX-48213?"   -> Tomas Okafor

Retrieval with the question alone finds fact 1 (it shares the shipment id) but not fact 2 (it shares
only common words), so a system must read the bridge (Mara Lindqvist) and search again with it: the
"who supervises the courier who carries shipment X" case that raw-text re-querying lost.

Two surface forms with disjoint wording (`form` 0 and 1): pick settings on one, report the other.
Forms 2 and 3 (`TRAIN_ONLY_FORMS`) only add wording variety to the reader's training data: form 2
has six hand-written relations, form 3 `COMPOSED` ones put together from lists of items, roles, verbs
and sentence orders (`composed_relations`), none using a relation word of form 1.
Each form has several relations, so a reader cannot learn one sentence pattern. Written for this
project; names are drawn from lists written here, ids are random.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

FIRST = tuple(
    """
    Mara Tomas Ines Kofi Lena Arjun Noor Pavel Sofia Emeka Hana Luis Yara Oskar Mei Dario Ama Felix
    Rosa Kenji Lior Asha Bruno Elif Hugo Nadia Tariq Vera Idris Maya Soren Lucia Omar Freya Jonas
    Zainab Milan Keiko Rafael Ilse Kwame Anya Mateo Greta Samir Leila Viktor Nia Pedro Ada Hamid
    Clara Yusuf Irene Bastian Amara Dmitri Paula Teodor Selin
    """.split()
)
LAST = tuple(
    """
    Lindqvist Okafor Marchetti Haddad Novak Brennan Takahashi Oyelaran Castillo Petrov Moreau Ibsen
    Kowalski Achebe Varga Delgado Nakamura Rahman Fischer Mensah Quintero Lund Sato Aydin Caruso
    Holm Adeyemi Ferreira Vogel Bianchi Kader Sorensen Yilmaz Duarte Engel Mwangi Laurent Bergstrom
    Ortega Hayashi Nilsson Abara Conti Falk Gallo Iqbal Jensen Keller Lopes Matsuda Njoroge Pereira
    Rossi Strand Tanaka Ueda Wolff Zamora Aalto Brandt
    """.split()
)


@dataclass(frozen=True)
class Relation:
    """One two-hop pattern: fact 1 links an item to a bridge person, fact 2 the bridge to the answer."""

    item: str  # what the question starts from, with {id}: "shipment {id}"
    fact1: str  # "{Item} is carried by the courier {bridge}." ({Item}: item with a capital)
    fact2: str  # "The courier {bridge} reports to the supervisor {answer}."
    question: str  # "Who supervises the courier who carries {item}?"
    id_prefix: str  # letters before the item's digits, e.g. "KX"


FORMS: tuple[tuple[Relation, ...], ...] = (
    (  # form 0: logistics, clinics, labs
        Relation(
            "shipment {id}",
            "{Item} is carried by the courier {bridge}.",
            "The courier {bridge} reports to the supervisor {answer}.",
            "Who supervises the courier who carries {item}?",
            "KX",
        ),
        Relation(
            "patient file {id}",
            "{Item} was assigned to the nurse {bridge}.",
            "The nurse {bridge} works under the head physician {answer}.",
            "Which head physician oversees the nurse assigned to {item}?",
            "PF",
        ),
        Relation(
            "sample {id}",
            "{Item} was analysed by the technician {bridge}.",
            "The technician {bridge} is trained by the senior chemist {answer}.",
            "Who trained the technician who analysed {item}?",
            "SM",
        ),
    ),
    (  # form 1: other roles, other verbs, other word order
        Relation(
            "invoice {id}",
            "The accountant {bridge} signed off {item}.",
            "{answer} is the auditor who reviews the work of {bridge}.",
            "Name the auditor reviewing whoever signed off {item}.",
            "IV",
        ),
        Relation(
            "flight {id}",
            "Captain {bridge} piloted {item}.",
            "{answer} taught Captain {bridge} to fly.",
            "Who taught the pilot of {item} to fly?",
            "FL",
        ),
        Relation(
            "case {id}",
            "Detective {bridge} led the inquiry into {item}.",
            "{answer} is the chief inspector who commands Detective {bridge}.",
            "Which chief inspector commands the detective who led the inquiry into {item}?",
            "CS",
        ),
    ),
    (  # form 2: training only (reader wording variety); roles, verbs and word order of neither 0 nor 1
        Relation(
            "contract {id}",
            "The lawyer {bridge} drafted {item}.",
            "The lawyer {bridge} answers to the senior partner {answer}.",
            "To which senior partner does the lawyer who drafted {item} answer?",
            "CT",
        ),
        Relation(
            "parcel {id}",
            "{Item} went out with the driver {bridge}.",
            "{answer} manages the driver {bridge}.",
            "Who manages the driver that took {item}?",
            "PC",
        ),
        Relation(
            "ticket {id}",
            "Support agent {bridge} closed {item}.",
            "Support agent {bridge} is coached by the team lead {answer}.",
            "Which team lead coaches the agent who closed {item}?",
            "TK",
        ),
        Relation(
            "thesis {id}",
            "The student {bridge} submitted {item}.",
            "Professor {answer} advises the student {bridge}.",
            "Which professor advises the author of {item}?",
            "TH",
        ),
        Relation(
            "order {id}",
            "Chef {bridge} cooked {item}.",
            "Chef {bridge} learned the trade from {answer}.",
            "From whom did the chef who cooked {item} learn the trade?",
            "OR",
        ),
        Relation(
            "permit {id}",
            "{Item} was stamped by the clerk {bridge}.",
            "The registrar {answer} supervises the clerk {bridge}.",
            "Name the registrar over the clerk who stamped {item}.",
            "PM",
        ),
    ),
)

# form 3: composed from these parts (training only). None of form 1's relation words (accountant,
# auditor, sign off, review, captain, pilot, fly, teach, detective, inquiry, inspector, command).
_ITEMS = (  # (noun, id prefix)
    ("report", "RP"), ("account", "AC"), ("device", "DV"), ("claim", "CL"), ("booking", "BK"),
    ("loan", "LN"), ("song", "SG"), ("build", "BD"), ("policy", "PO"), ("route", "RT"),
    ("batch", "BT"), ("survey", "SV"), ("grant", "GR"), ("exhibit", "EX"), ("engine", "EN"),
    ("dossier", "DS"),
)  # fmt: skip
_DOERS = (  # the bridge's role
    "engineer", "designer", "analyst", "editor", "broker", "agent", "operator", "ranger", "mechanic",
    "tutor", "curator", "planner", "surveyor", "translator", "dispatcher", "archivist", "welder", "baker",
)  # fmt: skip
_BOSSES = (  # the answer's role
    "manager", "director", "mentor", "coordinator", "overseer", "foreman", "principal", "chairwoman",
    "superintendent", "steward", "warden", "dean",
)  # fmt: skip
_ACTS = (  # (past tense, passive form) of what the bridge did to the item
    ("handled", "was handled by"), ("approved", "was approved by"), ("repaired", "was repaired by"),
    ("filed", "was filed by"), ("prepared", "was prepared by"), ("inspected", "was checked by"),
    ("registered", "was registered by"), ("archived", "was archived by"), ("shipped", "was sent by"),
    ("tested", "was tested by"), ("wrote", "was written by"), ("restored", "was restored by"),
)  # fmt: skip
_TITLES = (  # a title before the bridge's name in some facts: part of the sentence, not of the answer
    "Officer", "Sergeant", "Doctor", "Judge", "Coach", "Mayor", "Pastor", "Professor", "Marshal", "Chef",
)  # fmt: skip
_UP = ("reports to", "answers to", "works for", "is managed by", "is guided by", "is overseen by")
_DOWN = ("supervises", "manages", "guides", "oversees", "directs", "looks after")
_FACT1 = (  # {Item}/{item} the item, {bridge} the person, {r1} the role, {act}/{passive} the verb
    "{Item} {passive} the {r1} {bridge}.",
    "The {r1} {bridge} {act} {item}.",
    "{bridge}, a {r1}, {act} {item}.",
    "It was the {r1} {bridge} who {act} {item}.",
    "Records show {item} {passive} {bridge}, the {r1}.",
    "{title} {bridge} {act} {item}.",
    "{Item} {passive} {title} {bridge}.",
)
_FACT2 = (  # {bridge}, {answer}, {r1}, {r2}, {up}, {down}
    "The {r1} {bridge} {up} the {r2} {answer}.",
    "The {r2} {answer} {down} the {r1} {bridge}.",
    "{answer} is the {r2} of the {r1} {bridge}.",
    "As {r2}, {answer} {down} {bridge}.",
    "{bridge} {up} {answer}, who is the {r2}.",
    "{answer} {down} {title} {bridge}.",
    "{title} {bridge} {up} {answer}.",
)
_QUESTION = (  # {item}, {r1}, {r2}, {act}
    "Who is the {r2} of the {r1} who {act} {item}?",
    "Which {r2} does the {r1} who {act} {item} answer to?",
    "Name the {r2} of whoever {act} {item}.",
    "The {r1} who {act} {item} has which {r2}?",
    "Who is {r2} over the person who {act} {item}?",
    "Who {down} the one who {act} {item}?",
    "Which {r2} {down} whoever {act} {item}?",
)


def composed_relations(n: int = 60, seed: int = 3) -> tuple[Relation, ...]:
    """n relations drawn from the parts above (a fixed seed: the same form 3 everywhere). Each has its
    own item noun x roles x verbs x sentence orders, so no pattern repeats often enough to be learnt
    as a sentence; what repeats is the structure (an item's person, then that person's superior)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        noun, prefix = rng.choice(_ITEMS)
        r1, r2 = rng.choice(_DOERS), rng.choice(_BOSSES)
        act, passive = rng.choice(_ACTS)
        up, down = rng.choice(_UP), rng.choice(_DOWN)
        f1, f2, q = rng.choice(_FACT1), rng.choice(_FACT2), rng.choice(_QUESTION)
        title = rng.choice(_TITLES)
        fill = {"r1": r1, "r2": r2, "act": act, "passive": passive, "up": up, "down": down, "title": title}
        keep = {"Item": "{Item}", "item": "{item}", "bridge": "{bridge}", "answer": "{answer}"}
        out.append(
            Relation(
                f"{noun} {{id}}",
                f1.format(**fill, **keep),
                f2.format(**fill, **keep),
                q.format(**fill, **keep),
                prefix,
            )
        )
    return tuple(out)


FORMS = (*FORMS, composed_relations())
TRAIN_ONLY_FORMS = (2, 3)  # surface forms no eval reports (the reader trains on them); 0 and 1 are eval forms


@dataclass(frozen=True)
class EntityFacts:
    """One two-hop question with its two facts."""

    fact1: str  # names the item and the bridge
    fact2: str  # names the bridge and the answer
    question: str  # names only the item
    bridge: str  # the person fact 1 leads to
    answer: str  # the person the question asks for


def _fresh(make, used: set[str], what: str) -> str:
    """A string from `make()` not yet in `used` (then added to it)."""
    for _ in range(10_000):
        tok = make()
        if tok not in used:
            used.add(tok)
            return tok
    raise ValueError(f"ran out of distinct {what}; ask for fewer two-hop needles")


def make_facts(rng: random.Random, form: int, used: set[str]) -> EntityFacts:
    """One question of surface form `form` (0, 1; 2 for training); `used` keeps names and ids distinct."""
    if form not in range(len(FORMS)):
        raise ValueError(f"form must be in 0..{len(FORMS) - 1}, got {form}")
    rel = rng.choice(FORMS[form])
    item = rel.item.format(
        id=_fresh(lambda: f"{rel.id_prefix}-{rng.randrange(10_000, 100_000)}", used, "ids")
    )
    bridge, answer = (_fresh(lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}", used, "names") for _ in "ab")
    cap = item[0].upper() + item[1:]
    return EntityFacts(
        fact1=rel.fact1.format(Item=cap, item=item, bridge=bridge),
        fact2=rel.fact2.format(bridge=bridge, answer=answer),
        question=rel.question.format(item=item),
        bridge=bridge,
        answer=answer,
    )


def distractor_facts(rng: random.Random, form: int, avoid: frozenset[str]) -> Iterator[str]:
    """An endless stream of facts of the same relations about other items and people (never a name
    or id in `avoid`), so the haystack is full of look-alike facts. Repeats among distractors are
    allowed (a stream of a billion tokens cannot keep them distinct)."""
    if form not in range(len(FORMS)):
        raise ValueError(f"form must be in 0..{len(FORMS) - 1}, got {form}")
    while True:
        rel = rng.choice(FORMS[form])
        item = rel.item.format(id=f"{rel.id_prefix}-{rng.randrange(10_000, 100_000)}")
        a, b = (f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(2))
        if avoid.intersection((item.split()[-1], a, b)) or a == b:
            continue
        cap = item[0].upper() + item[1:]
        if rng.random() < 0.5:
            yield rel.fact1.format(Item=cap, item=item, bridge=a)
        else:
            yield rel.fact2.format(bridge=a, answer=b)
