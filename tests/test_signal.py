"""The planted-signal corpus (`socialcorpus sample --signal`, pipelines/sample/signal.py): the
history streams reach the shards attached to the right messages and authors, and a broken join
shows; and the ablation on a small trained model (slow)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil

import numpy as np
import polars as pl
import pytest
from tokenizers import Tokenizer

from pipelines.core import config as cfgmod
from pipelines.stages import shards as shards_stage
from pipelines.core import storage
from pipelines.build import build
from pipelines.core.context import RunContext
from pipelines.sample import write_sample
from pipelines.sample.signal import ECHO_SUFFIX, PET_SUFFIX, SIGNOFF_MARK
from schemas import EXAMPLES as E
from schemas import SHARD as S
from schemas import TIMELINE as TL

pytestmark = pytest.mark.slow  # one corpus build (about 10 s on an idle 2-core machine)

SIGNOFF_RE = re.compile(re.escape(SIGNOFF_MARK) + r"([a-z]+)\s*$")
PET_RE = re.compile(r"([a-z]+)" + re.escape(PET_SUFFIX) + r"\.")
ECHO_RE = re.compile(r"([a-z]+)" + re.escape(ECHO_SUFFIX))
# The interlocutor stream must hold the interlocutor's public messages, not only what the author
# had read: with reply trees five deep the reading histories rarely reach the pet word.
SIGNAL_SECTIONS = {"examples": {"validation_fraction": 0.2, "other_public": True}}


def build_signal_corpus(root) -> cfgmod.CorpusConfig:
    write_sample(str(root / "dumps"), seed=0, scale=1, signal=True)
    cfg = cfgmod.load(str(root / "dumps" / "corpus.toml"))
    cfg = cfg.with_overrides(sections={**cfg.sections, **SIGNAL_SECTIONS})
    build(RunContext(cfg))
    return cfg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_signal_corpus(tmp_path_factory.mktemp("signal"))


def habits(cfg) -> tuple[dict, dict]:
    """{author pseudonym: sign-off word}, {author pseudonym: pet word}, read off the timeline's text
    (so independent of the histories, examples and shards stages under test)."""
    tl = storage.read(cfg.table_url(TL.name)).select(TL.author_id, TL.text)
    sig = tl.select(TL.author_id, pl.col(TL.text).str.extract(SIGNOFF_RE.pattern, 1).alias("w")).drop_nulls().unique()
    pet = tl.select(TL.author_id, pl.col(TL.text).str.extract(PET_RE.pattern, 1).alias("w")).drop_nulls().unique()
    for name, df in (("sign-off", sig), ("pet word", pet)):
        dup = df.group_by(TL.author_id).len().filter(pl.col("len") > 1)
        assert dup.height == 0, f"authors with two {name}s: {dup.head(3).to_dicts()}"
    return dict(sig.iter_rows()), dict(pet.iter_rows())


def stream_messages(tok: Tokenizer, tokens: list[int], offsets: list[int]) -> list[str]:
    """The decoded bodies of a rendered stream's messages (role, gap and boundary tokens dropped)."""
    return [tok.decode(tokens[a:b], skip_special_tokens=True) for a, b in itertools.pairwise(offsets)]


def join_report(cfg, split: str = "validation") -> dict:
    """Per stream, how many history messages carry a sign-off, and how many carry the right
    one: the perspective author's in the own stream, the interlocutor's in the interlocutor stream."""
    tok = Tokenizer.from_file(cfg.table_url("tokenizer.json"))
    sig, _ = habits(cfg)
    rows = shards_stage.read_flat(cfg.table_url("shards", split, shards_stage.MANIFEST)).to_pylist()
    out = {"own": [0, 0], "other": [0, 0], "rows": len(rows)}
    for r in rows:
        for stream, who in (("own", r[S.self_id]), ("other", r[S.other_id])):
            for text in stream_messages(tok, r[f"{stream}_tokens"], r[f"{stream}_msg_offsets"]):
                m = SIGNOFF_RE.search(text)
                if m:
                    out[stream][0] += 1
                    out[stream][1] += m.group(1) == sig.get(who)
    return out


def test_every_user_has_one_signoff_and_one_pet_word(corpus):
    sig, pet = habits(corpus)
    with open(os.path.join(os.path.dirname(corpus.path), "planted.json")) as f:
        planted = json.load(f)["signal"]
    assert len(sig) > 100 and len(pet) > 100
    assert set(sig.values()) <= set(planted["signoffs"]) and set(pet.values()) <= set(planted["pets"])


def test_history_streams_carry_their_authors_habits_into_the_shards(corpus):
    rep = join_report(corpus)
    for stream in ("own", "other"):
        carried, right = rep[stream]
        assert carried > 1000, rep
        assert right == carried, f"{stream} stream: {carried - right} of {carried} messages carry another author's sign-off"


def test_planted_words_are_not_in_the_window_where_only_a_stream_can_explain_them(corpus):
    """A first message in a thread: its sign-off is nowhere earlier in its window. An echo of V's
    pet word: the word is nowhere earlier in the window, but in V's stream for most examples."""
    tok = Tokenizer.from_file(corpus.table_url("tokenizer.json"))
    _, pet = habits(corpus)
    rows = shards_stage.read_flat(corpus.table_url("shards", "validation", shards_stage.MANIFEST)).to_pylist()
    echoes = in_stream = 0
    for r in rows:
        msgs = stream_messages(tok, r[S.window_tokens], r[S.window_msg_offsets])
        target, context = msgs[-1], " ".join(msgs[:-1])
        m = ECHO_RE.search(target)
        if m and m.group(1) == pet.get(r[S.other_id]) and m.group(1) not in context:
            echoes += 1
            in_stream += m.group(1) in tok.decode(r[S.other_tokens], skip_special_tokens=True)
    assert echoes > 50 and in_stream > 0.5 * echoes, (echoes, in_stream)


def test_the_loaders_stream_membership_matches_the_role_tokens(corpus):
    """The batches' ``own_member``/``other_member`` (the ssm_member input) mark exactly the stream
    tokens of the stream person's messages: ``<self>`` messages in the own stream, ``<other>``
    messages in the interlocutor stream, wherever a message's role token is in the kept tail."""
    from trainer.data import ShardStream, load_manifest

    man = load_manifest(corpus.table_url("shards", "validation", "manifest.json"))
    sp = man.special_tokens
    checked = {"own": [0, 0], "other": [0, 0]}
    for i, b in enumerate(ShardStream(man, 32, shuffle=False, block_size=96, history_size=64)):
        if i >= 10:
            break
        for side, role in (("own", "<self>"), ("other", "<other>")):
            tok, seg, mem = b[side].numpy(), b[f"{side}_seg"].numpy(), b[f"{side}_member"].numpy()
            r, t = np.nonzero((tok[:, :-1] == sp["<msg>"]) & (seg[:, :-1] >= 0))
            same = mem[r, t] == (tok[r, t + 1] == sp[role])
            checked[side][0] += len(r)
            checked[side][1] += int(same.sum())
            assert ((mem == 1) <= (seg >= 0)).all()                  # padding is never a member
            # a message's tokens share its membership
            inside = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] >= 0)
            assert (mem[:, 1:][inside] == mem[:, :-1][inside]).all()
    for side, (n, same) in checked.items():
        assert n > 200 and same == n, checked


def test_a_broken_history_join_is_caught(corpus, tmp_path):
    """Own streams permuted across the examples of each timeline (histories attached to the wrong
    messages and authors, as a bad join in the histories or examples stage would): the check fails."""
    bad = corpus.with_overrides(out=str(tmp_path / "out"))
    shutil.copytree(corpus.table_url(TL.name), bad.table_url(TL.name))
    shutil.copy(corpus.table_url("tokenizer.json"), bad.table_url("tokenizer.json"))
    ex = storage.read(corpus.table_url(E.name)).with_row_index("_i")
    rng = np.random.default_rng(0)
    # within a timeline only: the shards stage refuses references to seqs a timeline lacks
    perm = np.concatenate([rng.permutation(g["_i"].to_numpy()) for g in ex.partition_by(E.timeline_id, maintain_order=True)])
    order = np.concatenate([g["_i"].to_numpy() for g in ex.partition_by(E.timeline_id, maintain_order=True)])
    donor = np.empty(ex.height, dtype=np.int64)
    donor[order] = perm
    shifted = ex.with_columns(ex[E.own_seqs].gather(donor), ex[E.own_gaps].gather(donor)).drop("_i")
    storage.write_table(bad.table_url(E.name), shifted, schema=E)
    shards_stage.run(RunContext(bad))
    carried, right = join_report(bad)["own"]
    assert carried > 1000 and right < 0.5 * carried


# -- the ablation on a trained model ------------------------------------------------------------

STEPS = 300          # about 60 s of training at one thread on an idle 2-core machine
EVAL_BATCHES = 25    # 400 validation examples


def planted_groups(cfg, pe: dict) -> dict[str, np.ndarray]:
    """Masks over evaluated examples: ``own`` (the target's sign-off is its author's and not earlier
    in the window), ``echo`` (the target echoes the interlocutor's pet word, not earlier in the window)."""
    tok = Tokenizer.from_file(cfg.table_url("tokenizer.json"))
    sig, pet = habits(cfg)
    rows = shards_stage.read_flat(cfg.table_url("shards", "validation", shards_stage.MANIFEST)).select(
        [S.target_message_id, S.other_id, S.window_tokens, S.window_msg_offsets]).to_pylist()
    window = {(r[S.target_message_id], r[S.other_id]): stream_messages(tok, r[S.window_tokens], r[S.window_msg_offsets])
              for r in rows}
    own, echo = (np.zeros(len(pe["self_id"]), dtype=bool) for _ in range(2))
    for i, key in enumerate(zip(pe["target_message_id"], pe["other_id"])):
        msgs = window[key]
        target, context = msgs[-1], " ".join(msgs[:-1])
        s, p = sig.get(pe["self_id"][i]), pet.get(key[1])
        own[i] = bool(s) and target.rstrip().endswith(SIGNOFF_MARK + s) and SIGNOFF_MARK + s not in context
        m = ECHO_RE.search(target)
        echo[i] = bool(p) and m is not None and m.group(1) == p and p not in context
    return {"own": own, "echo": echo}


def verdict(result: dict, groups: dict) -> list[str]:
    """What the planted signal requires of the ablation, as a list of failures (empty = all hold)."""
    from trainer.evaluate import summarise

    pe = result["per_example"]
    users = np.array(pe["self_id"])
    fails = []
    for group, stream in (("own", "own_only"), ("echo", "other_only")):
        r = summarise(pe["nll"], pe["target_bytes"], pe["target_role"], users, groups[group])
        gain = r["both"]["gain_vs_none"]
        if not r["both"]["gain_ci95"][0] > 0:
            fails.append(f"{group}: both streams do not beat none (gain {gain:+.4f}, CI {r['both']['gain_ci95']})")
            continue
        if not r[stream]["gain_vs_none"] > 0.5 * gain:
            fails.append(f"{group}: {stream} recovers {r[stream]['gain_vs_none']:+.4f} of {gain:+.4f}")
        for control in ("random_pair", "swapped"):
            if not r[control]["gain_vs_none"] < 0.5 * gain:
                fails.append(f"{group}: {control} keeps {r[control]['gain_vs_none']:+.4f} of {gain:+.4f}")
    return fails


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    import torch

    from trainer import config as tcfg
    from trainer.train import train

    torch.set_num_threads(1)  # two threads on the shared 2-core machine run several times slower
    run = tmp_path_factory.mktemp("signal_run")
    cfg = tcfg.replace(tcfg.PRESETS["tiny"], max_steps=STEPS, block_size=96, history_size=64)
    train(cfg, corpus.table_url("shards", "train", "manifest.json"), str(run), device="cpu", log=lambda s: None)
    return run


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="the social block does not learn the planted habits within this CPU budget "
                                       "(docs/trainer.md, 'Does the history signal get through?'); strict: remove "
                                       "this mark when it passes")
def test_the_trained_model_uses_the_streams_for_what_only_they_explain(corpus, trained):
    from trainer.evaluate import evaluate

    r = evaluate(str(trained), corpus.table_url("shards", "validation", "manifest.json"), device="cpu",
                 max_batches=EVAL_BATCHES, per_example=True, log=lambda s: None)
    groups = planted_groups(corpus, r["per_example"])
    assert groups["own"].sum() > 100 and groups["echo"].sum() > 10, {k: int(v.sum()) for k, v in groups.items()}
    assert verdict(r, groups) == []


def test_the_sample_command_plants_the_signal_only_when_asked(tmp_path, capsys):
    from pipelines.cli import main as socialcorpus

    assert socialcorpus(["sample", "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert socialcorpus(["sample", "--out", str(tmp_path / "signal"), "--signal"]) == 0
    planted = json.loads(capsys.readouterr().out)
    assert "signal" not in plain and planted["signal"]["signoffs"] > 1000 and planted["signal"]["echoes"] > 100
    assert planted["records"] == plain["records"]                    # planting adds words, never records
    with open(tmp_path / "signal" / "planted.json") as f:
        assert json.load(f)["signal"]["counts"] == planted["signal"]
    with open(tmp_path / "plain" / "planted.json") as f:
        assert "signal" not in json.load(f)
