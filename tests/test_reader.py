"""The reader (retro/reader.py): layout, the shipped checkpoint on tiny data, citations, abstention."""

from __future__ import annotations

import numpy as np
import pytest

from retro.reader_layout import (
    BOS,
    EOS,
    PAD,
    SPECIALS_IDS,
    ReaderConfig,
    answer_ids,
    mark_matches,
    question_prefix,
    training_example,
)

NEEDLE = "One of the special magic numbers for quiet-toad is: 4829173."
FILLER = (
    "The violet engine pushes the tiny magnet above the walrus. The soft oasis pulls the brave fiddle "
    "above the fiddle. The glad bagel sells the sandy thistle before the wolf. "
)
QUESTION = "What is the special magic number for quiet-toad mentioned in the provided text?"


def test_layout_question_ends_chunk_and_answer_reads_its_neighbours():
    cfg = ReaderConfig(chunk_len=8, retrieved_len=8)
    m = cfg.chunk_len
    prefix = question_prefix(list(range(10, 19)), cfg)  # 9 tokens + <s> + <sep> = 11 -> 2 chunks
    assert len(prefix) == 2 * m and prefix[-1] == SPECIALS_IDS["sep"] and prefix[5] == BOS
    assert prefix[:5] == [PAD] * 5
    target = answer_ids([[30, 31], [32]])
    assert target == [30, 31, SPECIALS_IDS["next"], 32, EOS]
    assert answer_ids([]) == [SPECIALS_IDS["abstain"], EOS]
    nb = np.full((3, 8), 40, np.int32)
    tok, tgt, w, nbs = training_example(prefix, target, nb, cfg)
    # L = (qc + a) * M - 1 = (2 + 1) * 8 - 1; C = L // M = 2 chunks, u = 1
    assert tok.shape == (23,) and nbs.shape == (2, 3, 8)
    assert (nbs[0] == PAD).all() and (nbs[1] == 40).all()  # only chunk u (the question's last) retrieves
    # <sep> at position u*M + M-1 = 15 is the first position reading chunk u's neighbours and predicts answer[0]
    assert tok[15] == SPECIALS_IDS["sep"] and tgt[15] == 30
    assert w[:15].sum() == 0 and w[15:20].sum() == 5 and w[20:].sum() == 0
    assert list(tgt[15:20]) == target


def test_match_levels_mark_runs_of_question_tokens():
    v = 100
    question = [7, 8, 9, 20]  # "Irene Okafor ..." as pieces 7 8 9
    block = np.array([[[7, 8, 9, 5, PAD], [7, 30, 8, 9, 7]]], np.int32)  # [C=1, K=2, R=5]
    one = mark_matches(block, question, v) // v
    assert one.tolist() == [[[1, 1, 1, 0, 0], [1, 0, 1, 1, 1]]]  # token level: the look-alike is marked too
    three = mark_matches(block, question, v, levels=3) // v
    assert three.tolist() == [[[3, 3, 3, 0, 0], [1, 0, 2, 2, 1]]]  # the whole run stands out
    assert (mark_matches(block, question, v, levels=3) % v == block).all()  # the ids are unchanged
    assert (mark_matches(block, [], v, levels=3) == block).all()
    with pytest.raises(ValueError, match="levels"):
        mark_matches(block, question, v, levels=0)


def test_new_match_levels_start_as_the_old_function(tmp_path):
    """Stage 6 adds run vectors to stage 5's weights; at zero they change no log-prob."""
    import jax.numpy as jnp
    from flax import nnx

    from retro.reader_model import ReaderNet
    from retro.reader_train import load_weights, save_weights

    cfg = ReaderConfig(d_model=32, n_heads=2, head_dim=16, d_ff=64, enc_dim=16, chunk_len=8, retrieved_len=8)
    old = ReaderNet(cfg.model_config(), 8, rngs=nnx.Rngs(0))
    old.retro.match.set_value(jnp.full((32,), 0.3))  # a trained token-level vector
    save_weights(old, tmp_path / "w.npz")
    new = ReaderNet(cfg.model_config(), 8, rngs=nnx.Rngs(1), match_levels=3)
    load_weights(new, tmp_path / "w.npz", strict=False)
    q = [11, 12, 13]
    prefix = question_prefix(q, cfg)
    nb = np.array([[11, 12, 13, 40, 41, 42, 43, 3], [12, 50, 51, 11, 52, 53, 54, 3]], np.int32)
    tok, tgt, _, _ = training_example(prefix, answer_ids([[40, 41]]), nb, cfg)
    c = len(tok) // cfg.chunk_len
    run = []
    for net, levels in ((old, 1), (new, 3)):
        nbs = np.full((c, 2, 8), PAD, np.int32)
        nbs[len(prefix) // cfg.chunk_len - 1 :] = mark_matches(nb, q, cfg.vocab_size, levels)
        run.append(np.asarray(net.answer_logprobs(tok[None], nbs[None], tgt[None])))
    np.testing.assert_allclose(run[0], run[1], rtol=1e-5, atol=1e-6)
    new.retro.match_runs.set_value(jnp.ones((2, 32)))  # once trained, runs change the reading
    nbs[len(prefix) // cfg.chunk_len - 1 :] = mark_matches(nb, q, cfg.vocab_size, 3)
    assert not np.allclose(np.asarray(new.answer_logprobs(tok[None], nbs[None], tgt[None])), run[0])


@pytest.fixture(scope="module")
def reader():
    from retro.reader import Reader

    return Reader.load()


def test_input_validation(reader):
    with pytest.raises(ValueError, match="question"):
        reader.answer("", [NEEDLE])
    with pytest.raises(ValueError, match="neighbours"):
        reader.answer(QUESTION, NEEDLE)
    with pytest.raises(ValueError, match="mode"):
        reader.answer(QUESTION, [NEEDLE], mode="beam")
    with pytest.raises(ValueError, match="max_new_tokens"):
        reader.answer(QUESTION, [NEEDLE], max_new_tokens=0)
    with pytest.raises(ValueError, match="exclude"):
        reader.answer(QUESTION, [NEEDLE], exclude="4829173")
    with pytest.raises(ValueError, match="exclude"):
        reader.answer(QUESTION, [NEEDLE], exclude=True)


def test_exclude_rules_out_an_answer(reader):
    """A chain's earlier bridges are never answered again: the next best generation (a span that is in
    the evidence, cited) or an abstention; an exclusion that does not hit changes nothing."""
    chain = "VAR QXJTB = VAR HUWZA. " + FILLER + "VAR HUWZA = VAR PLOKM. " + FILLER
    question = "What is the value of VAR QXJTB? VAR HUWZA"
    greedy = reader.answer(question, [chain])
    same = reader.answer(question, [chain], exclude=["VAR NOTIN"])
    assert (same.text, same.citations, same.logprob) == (greedy.text, greedy.citations, greedy.logprob)
    for ruled_out in {greedy.text, "VAR HUWZA"} - {None}:
        a = reader.answer(question, [chain], exclude=[ruled_out])
        assert a.text != ruled_out and ruled_out not in a.parts
        if not a.abstained:
            assert a.citations and all(chain[c["char_start"] : c["char_end"]] in a.parts for c in a.citations)
    both = reader.answer(question, [chain], exclude=["VAR HUWZA", "VAR PLOKM", "VAR QXJTB"])
    assert not set(both.parts) & {"VAR HUWZA", "VAR PLOKM", "VAR QXJTB"}


def test_answers_and_cites_spans_present(reader):
    nbs = [
        FILLER + "One of the special magic numbers for brave-wolf is: 1234567. " + FILLER,
        FILLER + NEEDLE + FILLER,
    ]
    a = reader.answer(QUESTION, nbs)
    assert a.mode == "constrained" and a.latency_ms > 0
    assert not a.abstained and a.text == "4829173"
    assert a.citations and all(
        nbs[c["neighbour"]][c["char_start"] : c["char_end"]] == a.text for c in a.citations
    )
    assert {c["neighbour"] for c in a.citations} == {1}
    again = reader.answer(QUESTION, nbs)  # deterministic
    assert (again.text, again.citations, again.logprob) == (a.text, a.citations, a.logprob)


def test_abstains_without_evidence(reader):
    a = reader.answer(QUESTION, [])
    assert a.abstained and a.text is None and a.citations == []
    b = reader.answer(
        QUESTION, [FILLER * 3, "One of the special magic numbers for brave-wolf is: 1234567. " + FILLER]
    )
    assert b.abstained and b.text is None


@pytest.mark.slow
def test_free_mode_never_invents(reader):
    nbs = [FILLER + NEEDLE + FILLER]
    a = reader.answer(QUESTION, nbs, mode="free")
    assert a.mode == "free"
    if not a.abstained:
        assert all(p in nbs[0] for p in a.parts)


def test_constrained_parts_end_on_whole_words(reader):
    """A copied part may stop only before a word start: "482917" of "4829173" cannot be emitted, even
    where a neighbour (a window of its document) ends mid-number."""
    from retro.reader import Constraint

    tok = reader.tok
    nbs = [FILLER + NEEDLE, "One of the special magic numbers for quiet-toad is: 482917"]
    c = Constraint([tok.encode(t) for t in nbs], tok)
    value = tok.encode(" 4829173")
    for t in value:
        c.advance(t)
        assert not c.mask(tok.vocab_size)[EOS] or t == value[-1]  # no part ends inside the number
    assert c.mask(tok.vocab_size)[EOS]  # "4829173" ends before "."


def test_constrained_parts_stay_in_one_sentence(reader):
    """After a piece that ends a sentence a copied part may only end (or go on inside the word, as in
    "3.14"): "Jonas Mensah. juggles" is not a part, "Jonas Mensah." is, and "v3.14" keeps its digits."""
    from retro.reader import Constraint

    tok = reader.tok
    text = "The courier Jonas Mensah. juggles the walrus. Release v3.14 is out."
    for prefix, may_go_on in (("Jonas Mensah.", False), ("Release v3.", True)):
        c = Constraint([tok.encode(text)], tok)
        ids = tok.encode(prefix)
        assert tok.decode(ids) == prefix
        for t in ids:
            c.advance(t)
        ok = c.mask(tok.vocab_size)
        assert ok[EOS] != may_go_on  # "Jonas Mensah." may end here; "v3." may not (inside "v3.14")
        starting = [t for t in np.flatnonzero(ok) if tok.starts_word[t]]
        assert not starting  # but no new word follows a sentence's end
        assert ok[tok.encode("v3.14")[-2]] == may_go_on  # "1" after "v3." continues the number


@pytest.mark.slow
def test_warm_compiles_every_step_an_answer_runs(reader):
    """After `warm(k)` no answer with k neighbours compiles again, whatever the reader answers: the old
    warm-up answered made-up questions and left the decode step uncompiled when it abstained on them
    (the first real answer then took 14 s). Bucket 20 (11-20 neighbours): no other test uses it."""
    with pytest.raises(ValueError, match="k must be"):
        reader.warm(0)
    reader.warm(12)
    compiled = reader._run._cache_size()
    nbs = [FILLER] * 11 + [FILLER + NEEDLE + FILLER]
    long_q = QUESTION + " " + FILLER[:200]  # a question of more than one chunk
    for q in (QUESTION, long_q):
        a = reader.answer(q, nbs)
        assert not a.abstained and a.text == "4829173"
    assert reader.answer(QUESTION, [FILLER] * 12).abstained
    assert reader._run._cache_size() == compiled
