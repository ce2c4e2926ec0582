"""Presidio, offline (pipelines/core/pii.py): the phone path (libphonenumber on candidate digit runs only,
once per window until a region matches) and the token-scoped recognizers, held to Presidio's stock
recognizers on real messages with planted phones of every format."""

import polars as pl
import pytest

from pipelines.core.pii import PREFILTER, PiiEngine, phone_windows
from pipelines.stages.ingest import IngestStats, expand_paths, iter_ingest
from schemas import MESSAGES as M
from schemas.placeholders import PLACEHOLDERS

SOURCES = {"reddit": "reddit/*.ndjson", "irc": "irc/ubuntu/2013/01/0[12]/*.txt",
           "discord": "discord/dce-frontend-example-guild/*.json", "slack": "slack/slack-export-viewer_testarchive",
           "stackexchange": "stackexchange"}
# Every phone format the demo corpus (pipelines/sample/talk.py) and benchmarks/bench_anonymize.py plant,
# then other common national and international writings.
PHONES = ["+1 415-555-0123", "(212) 555-0147", "(212) 555-1234", "+44 20 7946 0123", "020 7946 0123",
          "+61 2 5550 1234", "555-0123",
          "212-555-0123", "212.555.0123", "+1 (212) 555-0123", "+1-212-555-0123", "2125550123", "+442079460123",
          "+49 30 12345678", "030 12345678", "+33 1 42 68 53 00", "01 42 68 53 00", "+91 98765 43210",
          "+55 11 91234-5678", "(02) 5550 1234", "212 555 0123 ext. 12"]
# Ordinary numbers, dates and ids that must not become phone spans (nor were they before).
NOT_PHONES = ["on 2013-01-07 at 12:30", "2013-01-07 12:30:45", "07/01/2013", "01.07.2013", "version 1.2.3.4567",
              "1,234,567 people", "pi is 3.14159265", "order #1234567", "id 1234567", "ticket 123-456-789",
              "issue 20130107", "at 12:30:45.123456", "ISBN 978-3-16-148410-0", "$1,234,567.89", "2013 01 07",
              "20:15 - 21:45", "10/12/2020-11/12/2020", "uuid 123e4567-e89b-12d3-a456-426614174000",
              "card 4111 1111 1111 1111", "iban DE89 3704 0044 0532 0130 00", "server 172.16.12.13"]
CARD, IBAN, IP = "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "172.16.12.13"


@pytest.fixture(scope="module")
def engine():
    return PiiEngine()


@pytest.fixture(scope="module")
def reference(engine):
    """Presidio as the stage ran it before: one analyzer with the stock PhoneRecognizer (every region
    over the whole text) and the stock recognizers the scoped ones wrap, the stock context enhancer."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, PhoneRecognizer

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmail(EmailRecognizer):
        def validate_result(self, pattern_text):
            return offline(pattern_text).fqdn != ""

    ours = {r.name: r for r in engine.analyzer.registry.recognizers}
    url = ours["ProfileUrlRecognizer"]
    recs = [OfflineEmail(), IpRecognizer(), ours["CreditCardRecognizer"], ours["IbanRecognizer"],
            PatternRecognizer(supported_entity="PROFILE_URL", name="ProfileUrlRecognizer", patterns=url.patterns),
            ours["LocalPhoneRecognizer"], PhoneRecognizer(supported_regions=engine.phone_regions)]
    analyzer = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recs, supported_languages=["en"]),
                              nlp_engine=engine.nlp_engine, supported_languages=["en"])
    return analyzer, recs


def _reference_results(reference, engine, text, min_phone_digits=0):
    analyzer, _ = reference
    res = analyzer.analyze(text=text, language="en", entities=engine.entities, score_threshold=engine.score_threshold)
    return [r for r in res if r.entity_type != "PHONE_NUMBER"
            or sum(ch.isdigit() for ch in text[r.start:r.end]) >= min_phone_digits]


def _anon(engine, text, results):
    if not results:
        return text
    return engine.anonymizer.anonymize(text=text, analyzer_results=results, operators=engine.operators).text


@pytest.fixture(scope="module")
def texts(real):
    """Real message texts (Reddit, IRC, Discord, Slack, Stack Exchange samples, as the readers give them;
    distinct, in reading order)."""
    out = []
    for fmt, pat in SOURCES.items():
        for batch in iter_ingest(fmt, expand_paths([str(real / pat)]), IngestStats(format=fmt)):
            out += [t for t in batch.column(M.text).to_pylist() if t]
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def planted(texts):
    """(text, phone) pairs: every format in real messages, at the end, at the start, in the middle, and
    beside a card, an IBAN and an IP the way the benchmark plants them (` ; `-joined)."""
    out = []
    for i, phone in enumerate(PHONES):
        for j, how in enumerate(("end", "start", "middle", "beside")):
            t = texts[(i * 4 + j) * 37 % len(texts)]
            if how == "end":
                s = f"{t}\nCall me at {phone} after six."
            elif how == "start":
                s = f"{phone} is my number. {t}"
            elif how == "middle":
                k = len(t) // 2
                k = t.rfind(" ", 0, k) + 1  # at a word boundary
                s = f"{t[:k]}(phone: {phone}) {t[k:]}"
            else:
                s = f"{t} | someone{i}@mail-example.com ; {phone} ; {IP} ; {CARD} ; {IBAN} ; https://twitter.com/h{i}"
            out.append((s, phone))
    return out


def test_every_planted_phone_format_is_replaced_in_real_messages(engine, planted):
    for s, phone in planted:
        out, types = engine.anonymize(s)
        assert phone not in out and PLACEHOLDERS["PHONE"] in out, (phone, out)
        assert "PHONE" in types
        for value in (CARD, IBAN, IP):  # the values beside it keep their own placeholders
            assert value not in out


def test_phone_path_equals_stock_presidio_on_real_and_planted_messages(engine, reference, texts, planted):
    """Same output as the stock recognizers with libphonenumber over the whole text in every region, except
    that a digit run of fewer than 7 digits is never a phone candidate (the reference's such spans
    were ids in URLs on the real samples, e.g. `sid=134092`)."""
    flagged = pl.Series(texts).filter(pl.Series(texts).str.contains(PREFILTER)).to_list()
    assert len(flagged) > 50
    shorter = 0
    for s in flagged + [s for s, _ in planted]:
        ours = engine.anonymize(s)[0]
        ref = _anon(engine, s, _reference_results(reference, engine, s, min_phone_digits=7))
        assert ours == ref, s
        shorter += ref != _anon(engine, s, _reference_results(reference, engine, s))
    assert shorter <= 2  # counted, so a widening of the difference is seen here


def test_ordinary_numbers_dates_and_ids_do_not_become_phones(engine, reference, texts):
    for i, s in enumerate(NOT_PHONES):
        t = f"{texts[i * 53 % len(texts)]} {s}."
        assert not [r for r in engine.analyze(t) if r.entity_type == "PHONE_NUMBER"], s
        assert not [r for r in _reference_results(reference, engine, t) if r.entity_type == "PHONE_NUMBER"], s


def test_phone_windows_skip_claimed_runs_and_keep_context(engine):
    s = f"pay {CARD} or call (212) 555-0123 ext. 7; ip {IP}"
    card = (s.index(CARD), s.index(CARD) + len(CARD))
    ip = (s.index(IP), s.index(IP) + len(IP))
    wins = phone_windows(s, claimed=[card, ip])
    assert len(wins) == 1
    (ws, we, cands), = wins
    phone = s.index("212")
    assert cands == [(phone, phone + len("212) 555-0123"))]
    window = s[ws:we]
    # two characters before the `(`, the extension after, nothing of the card or the IP
    assert window == "l (212) 555-0123 ext. 7; ip ", window
    # unclaimed, the card and the IP are candidates too, in one merged window
    assert [len(c) for _, _, c in phone_windows(s)] == [3]
    assert phone_windows("12 34 56 x") == []  # fewer than 7 digits: no candidate


def test_phone_window_memo_gives_what_the_matchers_give(engine, texts, planted, monkeypatch):
    """The phone matches of a window are remembered per (window text, candidates): a message that
    repeats another's window at another offset, or with a span of it claimed, gets exactly the spans
    it gets with nothing remembered; and the memo stays within PHONE_MEMO_MAX windows."""
    from pipelines.core import pii

    rec = engine.phone
    base = "call (212) 555-0123 now, 4111 1111 1111 1111"
    card = base.index("4111")
    cases = [(base, ()), ("x" * 17 + base, ()), (f"{base} and {base}", ()), (base, ((card, card + 19),)),
             ("see 2005/12/25/x or " + base, ())]
    flagged = [t for t in texts if pii.PHONE_CANDIDATE_RE.search(t)]
    cases += [(s, ()) for s, _ in planted] + [(t, ()) for t in flagged]

    def spans(s, claimed):
        return sorted((r.start, r.end, r.score, r.entity_type) for r in rec.analyze(s, ["PHONE_NUMBER"], None, claimed))

    cold = []
    for s, claimed in cases:
        rec.__dict__.pop("_window_memo", None)
        cold.append(spans(s, claimed))
    assert sum(bool(c) for c in cold) >= len(planted) and len(flagged) > 20
    for bound in (pii.PHONE_MEMO_MAX, 3):
        monkeypatch.setattr(pii, "PHONE_MEMO_MAX", bound)
        rec.__dict__.pop("_window_memo", None)
        warm = [spans(s, claimed) for s, claimed in cases + cases]  # every window seen before, the second time
        assert warm == cold + cold
        assert 0 < len(rec._window_memo) <= bound
    assert cold[0] and cold[1] == [(a + 17, b + 17, sc, t) for a, b, sc, t in cold[0]]  # same window, shifted


def test_token_scoped_recognizers_give_the_stock_results(engine, reference, texts, planted):
    """E-mail, IP and profile-URL recognizers run on the whitespace-free tokens holding `@`, `.`/`:`
    and `/` only: the spans and scores are the stock recognizers' on every real and planted string."""
    _, stock = reference
    stock = {r.name if r.name != "OfflineEmail" else "OfflineEmailRecognizer": r for r in stock}
    ours = {r.name: r for r in engine.analyzer.registry.recognizers}
    flagged = [t for t in texts if any(c in t for c in "@/.:")][:3000] + [s for s, _ in planted]
    hits = 0
    for name in ("OfflineEmailRecognizer", "IpRecognizer", "ProfileUrlRecognizer"):
        rec, ref = ours[name], stock[name]
        for s in flagged:
            a = sorted((r.entity_type, r.start, r.end, r.score) for r in rec.analyze(s, rec.supported_entities, None))
            b = sorted((r.entity_type, r.start, r.end, r.score) for r in ref.analyze(s, ref.supported_entities, None))
            assert a == b, (name, s)
            hits += len(a)
    assert hits > 100
