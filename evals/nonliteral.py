"""Non-literal needles: the question paraphrases the needle and shares no content word with it.

Written for this project (not taken from any dataset). A needle is `SUBJECT PREDICATE(value).`
and its question is `QUESTION(subject paraphrase)?`, built from two tables of paraphrase pairs:
40 subjects x 26 predicates = 1040 distinct questions. `content_words` / `shared_content_words`
define "content word" (lower-cased, light suffix stemming, stopwords removed); a test checks every
combination shares none.
"""

from __future__ import annotations

import random
import re

from evals.words import ADJECTIVES, NOUNS, STOPWORDS

# (how the needle names the person, how the question names them)
SUBJECTS = (
    ("The retired astronaut", "the former space traveller"),
    ("My grandmother's neighbour", "the woman residing beside my nana"),
    ("The night-shift baker", "the person who makes bread after dark"),
    ("The lighthouse keeper", "the guardian of the coastal beacon tower"),
    ("The village blacksmith", "the hamlet's metalworker"),
    ("The youngest firefighter", "the most junior member of the blaze brigade"),
    ("The ship's cook", "the chef on board the vessel"),
    ("The museum curator", "the person in charge of the gallery exhibits"),
    ("The beekeeper", "the one who tends honey-making insects"),
    ("The chess champion", "the winner of the board-game tournament"),
    ("The orchestra's cellist", "the string player in the symphony"),
    ("The town librarian", "the custodian of the municipal book collection"),
    ("The submarine captain", "the commander of the underwater boat"),
    ("The mountain guide", "the person leading hikers up the peaks"),
    ("The family veterinarian", "the household's animal doctor"),
    ("The train conductor", "the railway ticket inspector"),
    ("The head gardener", "the chief groundskeeper"),
    ("The court stenographer", "the legal transcriptionist"),
    ("The circus acrobat", "the big-top tumbler"),
    ("The pastry chef", "the dessert cook"),
    ("The taxi driver", "the cabbie"),
    ("The jazz pianist", "the keyboard improviser"),
    ("The deep-sea diver", "the ocean-floor explorer"),
    ("The wedding photographer", "the marriage-ceremony picture taker"),
    ("The school principal", "the headmistress"),
    ("The bridge engineer", "the designer of the span over the river"),
    ("The park ranger", "the forest warden"),
    ("The royal tailor", "the monarch's dressmaker"),
    ("The puppet maker", "the marionette craftsman"),
    ("The radio announcer", "the broadcaster on the airwaves"),
    ("The cartographer", "the mapmaker"),
    ("The ice-cream vendor", "the frozen-dessert seller"),
    ("The auction house clerk", "the bidding-hall assistant"),
    ("The glassblower", "the artisan who shapes molten sand into vases"),
    ("The tugboat pilot", "the harbor towing-vessel skipper"),
    ("The weather forecaster", "the meteorologist"),
    ("The locksmith", "the specialist in padlocks and bolts"),
    ("The zookeeper", "the caretaker of the menagerie"),
    ("The violin teacher", "the fiddle instructor"),
    ("The night watchman", "the after-hours security guard"),
)

# (needle predicate with {v} = the value, question with {s} = the subject paraphrase)
PREDICATES = (
    ("named the new puppy {v}", "What did {s} call the recently adopted dog"),
    ("keeps a tortoise called {v}", "What is the name of the shelled reptile owned by {s}"),
    (
        "sailed to the island of {v} last summer",
        "Which isle did {s} travel to by boat during the previous warm season",
    ),
    (
        "secretly hid the emergency cash inside a tin labelled {v}",
        "What word is written on the container where {s} stashes rainy-day money",
    ),
    ("grows a rare orchid variety known as {v}", "Which uncommon flower does {s} cultivate"),
    ("wrote a novel titled {v}", "What book did {s} author"),
    ("gave the password {v} to the apprentice", "What secret phrase did {s} tell the trainee"),
    ("painted the front door with a shade called {v}", "What colour is the entrance to the home of {s}"),
    ("always orders a cocktail named {v}", "Which mixed drink does {s} request every time"),
    (
        "won the annual regatta sailing the yacht {v}",
        "On which sailboat did {s} triumph in the yearly boat race",
    ),
    (
        "buried a time capsule beneath the statue of {v}",
        "Under whose monument did {s} inter a box for future generations",
    ),
    (
        "learned to juggle from a street performer called {v}",
        "Who taught {s} to toss and catch several balls at once",
    ),
    (
        "named the family's rowing dinghy {v}",
        "What is painted on the hull of the small oar-powered craft belonging to {s}",
    ),
    (
        "trained a parrot that only says the word {v}",
        "What is the single utterance of the talking bird taught by {s}",
    ),
    (
        "stores the winter firewood in a shed nicknamed {v}",
        "What do people call the hut where {s} puts logs for the cold months",
    ),
    ("celebrates birthdays at a restaurant called {v}", "At which eatery does {s} mark another year of life"),
    ("once scaled a crag the locals call {v}", "Which rocky height did {s} ascend in the past"),
    (
        "drinks tea only from a mug painted with the word {v}",
        "What is written on the cup used by {s} for hot infusions",
    ),
    ("adopted a stray cat and called it {v}", "What is the name of the feline rescued by {s}"),
    ("bet a fortune on a racehorse named {v}", "Which galloping competitor did {s} wager lots of money on"),
    ("carved the initials of {v} into an old oak", "Whose monogram did {s} etch on an aged tree"),
    ("hums a lullaby called {v} every evening", "Which cradle song does {s} croon at dusk"),
    (
        "keeps the spare ledger hidden behind a painting of {v}",
        "Whose portrait conceals the extra account book belonging to {s}",
    ),
    ("founded a small charity called {v}", "What is the name of the nonprofit established by {s}"),
    (
        "translated a poem about {v} into Latin",
        "What was the subject of the verse {s} rendered in the ancient Roman tongue",
    ),
    (
        "swam across the lake to reach the village of {v}",
        "Which tiny settlement did {s} get to by crossing the water",
    ),
)

_WORD = re.compile(r"[a-z]+")


def _stem(w: str) -> str:
    for suf in ("ing", "ed", "es", "ly", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words of `text` that are not stopwords."""
    return {_stem(w) for w in _WORD.findall(text.lower().replace("'s", "")) if w not in STOPWORDS}


def shared_content_words(question: str, needle: str) -> set[str]:
    """Content words a question and a needle have in common (empty for a valid non-literal pair)."""
    return content_words(question) & content_words(needle)


def render(subject: int, predicate: int, value: str) -> tuple[str, str]:
    """(needle sentence, question) for one subject/predicate combination."""
    s_needle, s_question = SUBJECTS[subject]
    p_needle, p_question = PREDICATES[predicate]
    return f"{s_needle} {p_needle.format(v=value)}.", p_question.format(s=s_question) + "?"


def make(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """`n` distinct (needle, question, value) triples; values are capitalised coined words."""
    total = len(SUBJECTS) * len(PREDICATES)
    if n > total:
        raise ValueError(f"nonliteral task has {total} distinct questions; asked for {n} needles")
    combos = rng.sample(range(total), n)
    used: set[str] = set()
    out = []
    for c in combos:
        while True:
            value = (rng.choice(ADJECTIVES) + rng.choice(NOUNS)).capitalize()
            if value not in used:
                used.add(value)
                break
        needle, question = render(c // len(PREDICATES), c % len(PREDICATES), value)
        out.append((needle, question, value))
    return out
