"""Privacy, end to end: nothing planted in the demo dumps survives into any anonymised output.

The demo corpus plants e-mails, phone numbers, IPs, card numbers, IBANs, profile URLs and
mentions of other authors (see pipelines/sample.py and its planted.json). Every table from
`messages_anon` on, the tokenizer and the decoded shards must be free of them, of every raw
author handle and of the secret.
"""

import json
import re

import polars as pl
import pytest

from pipelines import config as cfgmod
from pipelines import storage
from pipelines.anonymize import STOPWORDS
from pipelines.context import RunContext
from pipelines.leaks import scan_leaks

ANON_TABLES = ("messages_anon", "messages_dedup", "timeline", "reading_histories", "pair_examples")


@pytest.fixture(scope="module")
def demo(demo_built):
    cfg = cfgmod.load(str(demo_built / "dumps" / "corpus.toml"))
    planted = json.loads((demo_built / "dumps" / "planted.json").read_text())
    return cfg, planted


def _strings(df: pl.DataFrame) -> list[str]:
    out = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            out += [v for v in df[name].to_list() if v]
        elif isinstance(dtype, pl.List) and dtype.inner == pl.String:
            out += [v for vs in df[name].to_list() if vs for v in vs if v]
    return out


def _decoded_shards(cfg) -> list[str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(cfg.table_url("tokenizer.json"))
    texts = []
    for split in ("train", "validation", "test"):
        manifest = json.loads(open(cfg.table_url("shards", split, "manifest.json")).read())
        for shard in manifest["shards"]:
            df = pl.read_parquet(cfg.table_url("shards", split, shard["path"]))
            for col in ("window_tokens", "own_tokens", "other_tokens"):
                texts += [tok.decode(ids, skip_special_tokens=False) for ids in df[col].to_list()]
    return texts


def test_every_planted_pii_value_is_gone_from_every_anonymised_output(demo):
    cfg, planted = demo
    values = {p["value"].lower() for p in planted["pii"] if p["type"] != "MENTION"}
    assert len(values) >= 20, "the demo should plant a fair amount of PII"
    haystacks = {t: "\n".join(_strings(storage.read(cfg.table_url(t)))).lower() for t in ANON_TABLES}
    haystacks["shards"] = "\n".join(_decoded_shards(cfg)).lower()
    haystacks["tokenizer.json"] = open(cfg.table_url("tokenizer.json"), encoding="utf-8").read().lower()
    leaks = sorted((where, v) for where, text in haystacks.items() for v in values if v in text)
    assert leaks == [], f"{len(leaks)} planted PII values survive, e.g. {leaks[:5]}"


def test_no_author_handle_survives_as_a_word_in_text(demo):
    cfg, planted = demo
    raw = storage.read(cfg.table_url("messages"))
    for table in ANON_TABLES[:3]:
        report = scan_leaks(raw, storage.read(cfg.table_url(table)), RunContext(cfg).secret())
        assert report.passed, f"{table}: {report.description} {report.samples}"
    # The shards too: no planted handle (other than a plain stop word, which the mention rule
    # leaves alone by design) appears as a word in the decoded token streams.
    names = [n for n in planted["author_names"] if len(n) >= 4 and n.lower() not in STOPWORDS]
    assert len(names) >= 20
    text = "\n".join(_decoded_shards(cfg)).lower()
    words = set(re.findall(r"\w+", text))
    hits = sorted(n for n in names if (n.lower() in words if re.fullmatch(r"\w+", n)
                                       else n.lower() in text  # fast pre-check before the word-boundary regex
                                       and re.search(rf"(?<!\w){re.escape(n.lower())}(?!\w)", text)))
    assert hits == [], f"{len(hits)} author names survive in the shards: {hits[:10]}"


def test_the_secret_is_in_no_output(demo):
    cfg, _ = demo
    secret = RunContext(cfg).secret().decode()
    for t in ANON_TABLES:
        assert secret not in "\n".join(_strings(storage.read(cfg.table_url(t))))
    assert secret not in open(cfg.table_url("tokenizer.json"), encoding="utf-8").read()
    for split in ("train", "validation", "test"):
        assert secret not in open(cfg.table_url("shards", split, "manifest.json")).read()


def test_pseudonyms_and_placeholders_replace_what_was_removed(demo):
    cfg, planted = demo
    anon = storage.read(cfg.table_url("messages_anon"))
    kinds = {t for ts in anon["pii_types"].to_list() for t in ts}
    assert {"EMAIL", "PHONE", "IP", "CREDIT_CARD", "IBAN", "URL", "MENTION"} <= kinds
    assert anon["author_name"].null_count() == anon.height and anon["author_aliases"].null_count() == anon.height
    assert anon.filter(pl.col("author_id").is_not_null())["author_id"].str.contains(r"^u[0-9a-f]{16}$").all()
