"""Near-dup: MinHash parity with datasketch, LSH + components, conversation-aware marking, on real samples."""

import random
import re

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from pipelines.core import storage
from pipelines.stages.dedup import dedup_records
from pipelines.stages.ingest import ingest
from pipelines import engines
from pipelines.core.minhash import EMPTY, shingle_frame, shingles_reference, signatures
from pipelines.stages.neardup import ROW, NearDupConfig, sig_columns, band_edges, components, document_text, near_dedup
from schemas import DEDUP
from schemas import MESSAGES as M

PRECISION_FLOOR, RECALL_FLOOR = 0.95, 0.90


@pytest.fixture(scope="module")
def real_messages(real, tmp_path_factory):
    out = tmp_path_factory.mktemp("neardup_real")
    for fmt, pat in {"reddit": "reddit/*.zst", "diplomacy": "diplomacy/train.jsonl", "telegram": "telegram/*.json",
                     "irc": "irc/ubuntu/2013/01/0[1-3]/*.txt"}.items():
        ingest(fmt, [str(real / pat)], str(out / "messages_raw" / fmt), str(out / "quarantine" / fmt))
    df, _ = dedup_records(storage.read(str(out / "messages_raw")))
    return df


@pytest.fixture(scope="module")
def marked(real_messages):
    return near_dedup(real_messages, NearDupConfig())


def test_minhash_equals_datasketch_bit_for_bit(real_messages):
    texts = real_messages.filter(pl.col(M.platform).is_in(["reddit", "irc"])).head(400)[M.text]
    texts = pl.concat([texts, pl.Series(["", "one", "Ünïcode wörds ok", "a b c d e f g"])])
    sig, _ = signatures(texts, num_perm=64, seed=7, k=3)
    sh, _ = shingle_frame(texts, 3)
    per_doc = {d: set(s) for d, s in sh.group_by("doc").agg("s").iter_rows()}
    for i, t in enumerate(texts.to_list()):
        ref = shingles_reference(t, 3)
        assert per_doc.get(i, set()) == ref
        m = MinHash(num_perm=64, seed=7)
        for s in ref:
            m.update(s.encode("utf-8"))
        assert np.array_equal(m.hashvalues, sig[i]), i


def test_distinct_numbers_codes_densely_in_value_order_and_points_at_an_occurrence():
    """The mechanism behind both the distinct k-grams and the renumbering between folds: the same
    inverse as ``np.unique``, and ``one`` names an occurrence of each distinct code."""
    from pipelines.core.minhash import _distinct

    rng = np.random.default_rng(5)
    code = np.concatenate([rng.integers(-2**62, 2**62, 5_000), rng.integers(0, 50, 5_000)])
    inverse, one = _distinct(code)
    uniq, want = np.unique(code, return_inverse=True)
    assert np.array_equal(inverse, want.reshape(-1))
    assert np.array_equal(code[one], uniq)
    empty_inverse, empty_one = _distinct(np.zeros(0, dtype=np.int64))
    assert len(empty_inverse) == 0 and len(empty_one) == 0


def test_long_shingles_over_a_large_vocabulary_stay_exact():
    """5-word shingles over 12,000 distinct words, where folding five word codes needs the dense
    renumbering between folds (12,000**5 > 2**63): the shingle sets and the signatures are still
    datasketch's."""
    words = [f"w{i}" for i in range(12_000)]
    rng = np.random.default_rng(3)
    texts = pl.Series([" ".join(rng.choice(words, 40)) for _ in range(300)] + [" ".join(words[:12])] * 2)
    sh, _ = shingle_frame(texts, 5)
    sig, _ = signatures(texts, num_perm=16, seed=1, k=5)
    per_doc = {d: set(s) for d, s in sh.group_by("doc").agg("s").iter_rows()}
    for i, t in enumerate(texts.to_list()):
        ref = shingles_reference(t, 5)
        assert per_doc[i] == ref
        m = MinHash(num_perm=16, seed=1)
        for s in ref:
            m.update(s.encode("utf-8"))
        assert np.array_equal(m.hashvalues, sig[i]), i
    assert np.array_equal(sig[-1], sig[-2])


def test_signatures_skip_texts_under_min_words_and_keep_the_others(real_messages):
    texts = real_messages.filter(pl.col(M.platform).is_in(["reddit", "irc"])).head(600)[M.text]
    full, n_words = signatures(texts, num_perm=32, seed=3, k=3)
    part, n_words2 = signatures(texts, num_perm=32, seed=3, k=3, min_words=8)
    long = n_words >= 8
    assert 0 < long.sum() < len(texts) and np.array_equal(n_words, n_words2)
    assert np.array_equal(part[long], full[long]) and (part[~long] == EMPTY).all()


def _band_case(planted):
    """(candidates frame, the expected edges): every (band, band values) bucket of the candidates,
    each member linked to the bucket's smallest row, computed here in plain Python."""
    df, _ = planted
    cfg = NearDupConfig()
    sig, n_words = signatures(document_text(df), cfg.num_perm, cfg.seed, cfg.shingle_size)
    eligible = np.flatnonzero(n_words >= cfg.min_tokens)
    want = set()
    for band in range(cfg.bands):
        buckets = {}
        for r in eligible.tolist():
            buckets.setdefault(sig[r, band * cfg.rows:(band + 1) * cfg.rows].tobytes(), []).append(r)
        for members in buckets.values():
            want |= {(u, min(members)) for u in members if u != min(members)}
    eligible_mask = pl.Series(n_words >= cfg.min_tokens)
    frame = pl.DataFrame({ROW: np.arange(len(df), dtype=np.int64),
                          **{c: sig.view(np.int32)[:, i] for i, c in enumerate(sig_columns(cfg.num_perm))}})
    frame = frame.with_columns(pl.when(eligible_mask).then(pl.col(c)).alias(c) for c in sig_columns(cfg.num_perm))
    return frame, want


def test_band_edges_are_the_star_edges_of_every_lsh_bucket(planted):
    """Band by band on the engine = every LSH bucket's star edges."""
    frame, want = _band_case(planted)
    got = engines.to_polars(band_edges(engines.frame(frame), NearDupConfig(), engines.of(frame)))
    assert got.height == len(want) > 100
    assert set(got.select("u", "v").iter_rows()) == want


def test_verified_edges_are_the_candidates_whose_signatures_agree_enough(planted):
    """Counting agreements 8 columns a pass = numpy's mean over whole signatures against the
    threshold; some candidates fall below it, so the check can tell."""
    from pipelines.stages.neardup import verified_edges

    frame, _ = _band_case(planted)
    cfg, engine = NearDupConfig(), engines.of(frame)
    edges = band_edges(engines.frame(frame), cfg, engine)
    got = set(engines.to_polars(verified_edges(edges, engines.frame(frame), cfg, engine)).iter_rows())
    sig = frame.select(sig_columns(cfg.num_perm)).to_numpy()
    pairs = list(engines.to_polars(edges).select("u", "v").iter_rows())
    want = {(u, v) for u, v in pairs if (sig[u] == sig[v]).mean() >= cfg.threshold}
    assert got == want and 0 < len(want) < len(pairs)


@pytest.mark.spark
def test_band_edges_in_one_spark_job_are_the_same_edges(planted, spark):
    """Spark groups every band in one job (a distributed engine); the edges do not change."""
    frame, want = _band_case(planted)
    sf = spark.createDataFrame(list(frame.iter_rows()), ", ".join([f"{ROW} bigint",
                                                                  *(f"{c} int" for c in frame.columns[1:])]))
    got = engines.to_polars(band_edges(engines.frame(sf), NearDupConfig(), engines.of(sf)))
    assert got.height == len(want) > 100
    assert set(got.select("u", "v").iter_rows()) == want


def test_components_are_connected_sets_labelled_by_smallest_node():
    edges = pl.DataFrame({"u": [5, 3, 9, 7], "v": [3, 1, 8, 9]})
    labels = dict(components(edges).iter_rows())
    assert labels == {1: 1, 3: 1, 5: 1, 7: 7, 8: 7, 9: 7}


def _variants(text: str, rng: random.Random) -> list[str]:
    words = text.split()
    i = rng.randrange(len(words))
    edit = words[:i] + [words[i] + "s"] + words[i + 1:]
    insert = words[:i] + ["really"] + words[i:]
    sents = [s for s in re.split(r"(?<=[.!?])\s+", text) if s]
    reorder = " ".join(sents[1:] + sents[:1]) if len(sents) > 1 else " ".join(words[len(words) // 2:] + words[:len(words) // 2])
    return [" ".join(edit), " ".join(insert), reorder]


@pytest.fixture(scope="module")
def planted(real_messages):
    rng = random.Random(0)
    pool = (real_messages.filter(pl.col(M.platform) == "reddit")
            .filter(pl.col(M.text).str.count_matches(r"\w+") >= 25).unique(M.text).sort(M.message_id))
    originals = pool.head(120)
    rows, group = [], {}
    for mid, text in zip(originals[M.message_id], originals[M.text]):
        group[mid] = mid
        for j, v in enumerate(_variants(text, rng)):
            vid = f"{mid}~v{j}"
            group[vid] = mid
            rows.append({M.message_id: vid, M.text: v, "src": mid})
    var = (pl.DataFrame(rows).join(originals.drop(M.text), left_on="src", right_on=M.message_id)
           .drop("src").select(real_messages.columns))
    return pl.concat([real_messages, var]), group


def test_planted_near_duplicates_found_with_precision_and_recall_floors(planted):
    df, group = planted
    out, _ = near_dedup(df, NearDupConfig())
    cluster_of = {}
    for mid, dup in zip(out[M.message_id], out[DEDUP.dup_of]):
        cluster_of[mid] = dup or mid
    found = sum(1 for v, o in group.items() if v != o and cluster_of[v] == cluster_of[o])
    recall = found / sum(1 for v, o in group.items() if v != o)
    pairs = out.filter(pl.col(DEDUP.dup_of).is_not_null()).select(M.message_id, DEDUP.dup_of)
    touching = [(a, b) for a, b in pairs.iter_rows() if a in group or b in group]
    precision = sum(1 for a, b in touching if group.get(a) == group.get(b) is not None) / len(touching)
    assert recall >= RECALL_FLOOR, recall
    assert precision >= PRECISION_FLOOR, precision


def test_real_diplomacy_double_sent_messages_are_marked(real_messages, marked):
    out, stats = marked
    d = real_messages.filter(pl.col(M.platform) == "diplomacy").sort(M.thread_id, M.time_ordinal)
    doubles = d.filter((pl.col(M.text) == pl.col(M.text).shift(1).over(M.thread_id))
                       & (pl.col(M.text).str.count_matches(r"\w+") >= NearDupConfig().min_tokens))
    assert doubles.height > 0
    res = out.join(doubles.select(M.message_id), on=M.message_id)
    assert (~res[DEDUP.is_target]).all() and res[DEDUP.dup_of].is_not_null().all()
    assert stats["duplicates_by_platform"]["diplomacy"] >= doubles.height


def test_real_reddit_repeats_are_marked_and_canonical_is_earliest(marked):
    out, _ = marked
    r = out.filter(pl.col(M.platform) == "reddit")
    reps = (r.filter(pl.col(M.text).str.count_matches(r"\w+") >= NearDupConfig().min_tokens)
            .filter(pl.col(M.text).is_duplicated()))
    assert reps.height > 0
    assert reps.filter(~pl.col(DEDUP.is_target)).height >= reps[M.text].n_unique()
    for _, g in reps.group_by(M.text):
        first = g.sort(M.created_at, M.message_id).row(0, named=True)
        assert first[DEDUP.is_target]
        assert set(g.filter(~pl.col(DEDUP.is_target))[DEDUP.dup_of]) == {first[M.message_id]}


def _gen(texts_authors):
    base = {M.platform: "reddit", M.community: "r/x", M.thread_id: "t", M.author_kind: "user", M.time_kind: "wall",
            M.time_precision: "second", M.kind: "comment", M.source_uri: "f"}
    from datetime import datetime, timedelta, timezone
    t0 = datetime(2020, 1, 1, tzinfo=timezone.utc)
    rows = [{**base, M.message_id: f"m{i:02d}", M.author_id: a, M.text: t, M.created_at: t0 - timedelta(minutes=i),
             M.order_in_source: i, M.source_record: i} for i, (t, a) in enumerate(texts_authors)]
    return pl.from_arrow(M.conform(pl.DataFrame(rows, infer_schema_length=None).to_arrow()))


def test_short_replies_are_never_candidates_and_mass_dups_are_flagged():
    spam = "Buy cheap watches at our store today, best prices guaranteed for everyone who clicks"
    df = _gen([("thanks a lot", "a"), ("thanks a lot", "b"), ("thanks a lot", "c"),
               (spam, "a"), (spam, "b"), (spam, "c"), ("An entirely different message about the weather in Paris today", "d")])
    out, stats = near_dedup(df, NearDupConfig())
    assert out.head(3)[DEDUP.is_target].all() and (out.head(3)[DEDUP.dup_cluster_size] == 1).all()
    spam_rows = out.slice(3, 3)
    # canonical = earliest created_at: m05 (created latest index -> earliest time)
    assert spam_rows[DEDUP.is_target].to_list() == [False, False, True]
    assert set(spam_rows[DEDUP.dup_of].drop_nulls()) == {"m05"}
    assert spam_rows[DEDUP.mass_dup].all() and (spam_rows[DEDUP.dup_cluster_size] == 3).all()
    assert out[DEDUP.is_target][6] and stats["mass_dup_clusters"] == 1 and stats["short"] == 3


def test_marks_are_deterministic_and_independent_of_row_order(planted):
    df, _ = planted
    a, _ = near_dedup(df)
    b, _ = near_dedup(df.reverse())
    cols = [M.message_id, DEDUP.is_target, DEDUP.dup_of, DEDUP.dup_cluster_size, DEDUP.mass_dup]
    assert a.select(cols).sort(M.message_id).equals(b.select(cols).sort(M.message_id))
    DEDUP.conform(a.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("pii_types")).to_arrow())
