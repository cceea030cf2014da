"""Needles and questions: determinism, distractor keys, multi-hop chains, non-literal pairs."""

from __future__ import annotations

import itertools
import re

import pytest

from evals import nonliteral
from evals.needles import TASKS, NeedleConfig, distractor_stream, make_needles


def test_same_seed_same_needles_different_seed_different():
    for task in TASKS:
        a, b = make_needles(NeedleConfig(task=task), 25, 0), make_needles(NeedleConfig(task=task), 25, 0)
        c = make_needles(NeedleConfig(task=task), 25, 1)
        assert a == b
        assert [n.text for n in a.needles] != [n.text for n in c.needles]


@pytest.mark.parametrize("key_type", ["word", "number", "uuid"])
@pytest.mark.parametrize("value_type", ["word", "number", "uuid"])
def test_needle_form_and_unique_keys(key_type, value_type):
    ns = make_needles(NeedleConfig(key_type=key_type, value_type=value_type), 1000, 0)
    assert len(ns.samples) == 1000 and len({n.key for n in ns.needles}) == 1000
    assert len({n.value for n in ns.needles}) == 1000
    kind = {"word": "words", "number": "numbers", "uuid": "uuids"}[value_type]
    for n, s in zip(ns.needles, ns.samples, strict=True):
        assert n.text == f"One of the special magic {kind} for {n.key} is: {n.value}."
        assert n.key in s.question and s.answers == (n.value,)
        if key_type == "uuid":
            assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", n.key)


def test_multikey_distractors_never_use_true_keys():
    ns = make_needles(NeedleConfig(task="multikey"), 100, 0)
    true = [n for n in ns.needles if n.task != "distractor"]
    dis = [n for n in ns.needles if n.task == "distractor"]
    assert len(true) == 100 and len(dis) == 300
    assert not {n.key for n in dis} & ns.true_keys
    stream = list(itertools.islice(distractor_stream(NeedleConfig(), ns.true_keys, 0), 5000))
    assert all(s.split(" for ", 1)[1].split(" is: ")[0] not in ns.true_keys for s in stream)
    assert len(set(stream)) > 4900


def test_multivalue_and_multiquery_group_needles():
    mv = make_needles(NeedleConfig(task="multivalue"), 10, 0)
    assert [len(s.needle_ids) for s in mv.samples] == [4, 4, 2]
    by_id = {n.needle_id: n for n in mv.needles}
    for s in mv.samples:
        assert len({by_id[i].key for i in s.needle_ids}) == 1
        assert set(s.answers) == {by_id[i].value for i in s.needle_ids}
    mq = make_needles(NeedleConfig(task="multiquery"), 8, 0)
    for s in mq.samples:
        keys = [n.key for n in mq.needles if n.sample_id == s.sample_id]
        assert len(keys) == 4 and all(k in s.question for k in keys)


def test_multihop_chain_resolves_to_the_answer():
    ns = make_needles(NeedleConfig(task="multihop", hops=4), 20, 0)
    for s in ns.samples:
        sents = [n.text for n in ns.needles if n.sample_id == s.sample_id]
        assert len(sents) == 5
        env = {}
        for line in sents:  # resolve the chain from the sentences alone
            m = re.fullmatch(r"VAR ([A-Z]+) = (?:VAR ([A-Z]+)|(\d+))\.", line)
            env[m.group(1)] = m.group(2) or int(m.group(3))
        last = re.search(r"VAR ([A-Z]+)\?", s.question).group(1)
        v, hops = env[last], 0
        while isinstance(v, str):
            v, hops = env[v], hops + 1
        assert hops == 4 and str(v) == s.answers[0]


def test_nonliteral_questions_share_no_content_word_with_needles():
    for i, j in itertools.product(range(len(nonliteral.SUBJECTS)), range(len(nonliteral.PREDICATES))):
        needle, question = nonliteral.render(i, j, "Zorblat")
        assert not nonliteral.shared_content_words(question, needle), (needle, question)
    ns = make_needles(NeedleConfig(task="nonliteral"), 1000, 0)
    assert len({s.question for s in ns.samples}) == 1000
    for n, s in zip(ns.needles, ns.samples, strict=True):
        assert s.answers[0] in n.text and s.answers[0] not in s.question
        assert not nonliteral.shared_content_words(s.question, n.text)


def test_bad_needle_config():
    with pytest.raises(ValueError, match="unknown needle task"):
        make_needles(NeedleConfig(task="nope"), 1, 0)
    with pytest.raises(ValueError, match="key_type"):
        make_needles(NeedleConfig(key_type="emoji"), 1, 0)
    with pytest.raises(ValueError, match=">= 1"):
        make_needles(NeedleConfig(), 0, 0)
    with pytest.raises(ValueError, match="distinct questions"):
        make_needles(NeedleConfig(task="nonliteral"), 5000, 0)


def test_twohop_questions_need_the_bridge_and_forms_differ():
    import itertools

    from evals.entities import FORMS

    a = make_needles(NeedleConfig(task="twohop"), 20, seed=5)
    assert a == make_needles(NeedleConfig(task="twohop"), 20, seed=5)  # deterministic
    by_id = {nd.needle_id: nd for nd in a.needles}
    for s in a.samples:
        fact1, fact2 = (by_id[i].text for i in s.needle_ids)
        bridge, answer = s.meta["bridge"], s.answers[0]
        item = s.question.rstrip("?").split()[-1]
        assert item in fact1 and bridge in fact1 and answer not in fact1
        assert bridge in fact2 and answer in fact2 and item not in fact2
        assert bridge not in s.question and answer not in s.question
    words = [{w for r in form for w in f"{r.fact1} {r.fact2} {r.question}".lower().split()} for form in FORMS]
    verbs = {"carried", "assigned", "analysed", "signed", "piloted", "led", "supervises", "taught"}
    assert not (words[0] & words[1] & verbs)  # the two surface forms share no relation verb
    stream = NeedleConfig(task="twohop", form=1)
    facts = list(itertools.islice(distractor_stream(stream, a.true_keys, seed=5), 200))
    assert not any(k in f for f in facts for k in a.true_keys)
    with pytest.raises(ValueError, match="form must be 0 or 1 .2, 3: training wordings."):
        NeedleConfig(task="twohop", form=4).check()


def test_composed_training_form_never_uses_the_held_out_wording():
    """Form 3 (reader training only) is put together from parts; it must not leak form 1's relation
    words (form 1 is the wording the reader is scored on and never trained on)."""
    from evals.entities import FORMS, TRAIN_ONLY_FORMS, make_facts

    assert TRAIN_ONLY_FORMS == (2, 3) and len(FORMS[3]) >= 40
    held_out = {"accountant", "auditor", "signed", "reviews", "captain", "piloted", "taught", "fly",
                "detective", "inquiry", "inspector", "commands"}  # fmt: skip
    text = " ".join(f"{r.fact1} {r.fact2} {r.question}" for r in FORMS[3]).lower()
    assert not held_out & set(text.replace(",", " ").replace(".", " ").replace("?", " ").split())
    assert len({r.fact1 for r in FORMS[3]}) > 30 and len({r.question for r in FORMS[3]}) > 30
    a = make_needles(NeedleConfig(task="twohop", form=3), 30, seed=9)
    assert a == make_needles(NeedleConfig(task="twohop", form=3), 30, seed=9)
    by_id = {nd.needle_id: nd for nd in a.needles}
    for s in a.samples:
        fact1, fact2 = (by_id[i].text for i in s.needle_ids)
        assert s.meta["bridge"] in fact1 and s.meta["bridge"] in fact2 and s.answers[0] in fact2
        assert s.meta["bridge"] not in s.question and s.answers[0] not in fact1
    import random

    f = make_facts(random.Random(0), 3, set())
    assert f.bridge in f.fact1 and f.answer in f.fact2 and "{" not in f.fact1 + f.fact2 + f.question
