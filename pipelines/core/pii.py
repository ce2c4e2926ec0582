"""Offline PII detection with Presidio: a curated recognizer set, a cheap prefilter, typed placeholders.

Presidio is used without any network access and, by default, without any language model:

* the NLP engine is Presidio's no-op engine (pattern recognizers need no tokens), so
  ``AnalyzerEngine`` never tries to download ``en_core_web_lg``;
* the e-mail recognizer validates domains with tldextract's *bundled* public-suffix list
  (the stock recognizer calls ``tldextract.extract``, which fetches the list over HTTP);
* the recognizer set is curated (e-mail, phone, IP, credit card, IBAN, profile URL): the
  default set tags ids and numbers in social text as driver licences, NHS numbers, … ;
* person names are detected only when a spaCy pipeline is configured *and* installed.

:data:`PREFILTER` is a Rust-regex (Polars) superset of what the recognizers can find; only
messages it flags are sent to Presidio. What keeps a flagged message cheap (about 0.5 ms for one
with seven values, was 4-6 ms):

* phones: Presidio's ``PhoneRecognizer`` (libphonenumber) runs after the other recognizers, only
  on the digit runs of 7+ digits they did not claim (cards, IBANs, IPs cost libphonenumber the most
  and can never end up as phones), and per window only until a region has matched every run in it
  (:class:`CandidatePhoneRecognizer`, :func:`phone_windows`);
* e-mail, IP and profile-URL patterns scan only the whitespace-free tokens that have an `@`, a
  `.`/`:` or a `/` (:class:`TokenScoped`; same spans as the stock recognizers);
* the no-op NLP engine's context step, which cannot change a score, is skipped (:func:`_context_enhancer`).
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import logging
import re
from dataclasses import dataclass, field

from schemas.placeholders import PLACEHOLDERS

log = logging.getLogger("socialcorpus.pii")

# Presidio entity -> our placeholder type (schemas/placeholders.py).
ENTITY_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "IP_ADDRESS": "IP",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "PROFILE_URL": "URL",
    "PERSON": "PERSON",
}

# Links whose path names a person: a profile page on a social site. Plain links to content
# (articles, threads, images) are kept: they are not about a person and carry meaning.
PROFILE_URL_RE = (
    r"(?:https?://)?(?:[\w-]+\.)*(?:"
    r"reddit\.com/(?:u|user)/[\w-]+"
    r"|(?:twitter|x)\.com/(?!home\b|search\b|i/)\w+"
    r"|(?:facebook|fb|instagram|threads)\.(?:com|net)/(?!groups/|events/|pages/)[\w.]+"
    r"|github\.com/[\w-]+"
    r"|linkedin\.com/in/[\w%-]+"
    r"|t\.me/\w+"
    r"|discord(?:app)?\.com/users/\d+"
    r"|youtube\.com/(?:@|c/|user/|channel/)[\w-]+"
    r"|(?:tiktok|medium)\.com/@[\w.-]+"
    r"|(?:stackexchange|stackoverflow|superuser|serverfault|askubuntu|mathoverflow)\.(?:com|net)/users/\d+"
    r"|launchpad\.net/~[\w.+-]+"
    r"|slack\.com/team/\w+"
    r")[^\s<>()\[\]\"']*"
    # Mastodon-style profiles: https://host/@name
    r"|https?://[\w.-]+/@\w+[^\s<>()\[\]\"']*"
)

LOCAL_PHONE_RE = r"(?<![\w\-.])\d{3}[-. ]\d{4}(?![\w\-]|\.\d)"

# Where libphonenumber is run: digit runs of 7+ digits joined by the separators libphonenumber's
# own matcher accepts (phonenumberutil._VALID_PUNCTUATION less the letter `x`), with leading `+`
# or brackets. The PREFILTER's digit alternative is a narrower form of it, so every message
# sent to Presidio for digits has a candidate. Python `re` (Unicode digits, like the matcher).
_PHONE_PUNCT = ("\\-\u2010-\u2015\u2212\u30FC\uFF0D-\uFF0F \u00A0\u00AD\u200B\u2060\u3000"
                "()\uFF08\uFF09\uFF3B\uFF3D.\\[\\]/~\u2053\u223C\uFF5E")
_PHONE_LEAD = "+\uFF0B(\\[\uFF08\uFF3B"
PHONE_CANDIDATE_RE = re.compile(f"[{_PHONE_LEAD}]*\\d(?:[{_PHONE_PUNCT}]*\\d){{6,}}")

# A cheap superset of everything the recognizers above can match (Rust regex, no
# look-around): an @ between word characters (e-mail), 7+ digits with separators (phone,
# card, IBAN body, IPv4), dotted quads, IPv6-ish hex groups, IBAN-looking codes, profile
# URL hosts. False hits only cost a Presidio call; misses would be leaks.
PREFILTER = "|".join([
    r"[\w.+-]@[\w-]+\.",
    r"\d(?:[ ().\-/]*\d){6,}",
    r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
    r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    r"::[0-9A-Fa-f]{1,4}",
    r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
    r"(?i)(?:reddit\.com/u|reddit\.com/user|twitter\.com/|x\.com/|facebook\.com/|fb\.com/|instagram\.com/"
    r"|threads\.net/|github\.com/|linkedin\.com/in|t\.me/|discord\.com/users|discordapp\.com/users"
    r"|youtube\.com/|tiktok\.com/@|medium\.com/@|/users/\d|launchpad\.net/~|slack\.com/team|https?://[^\s/]+/@)",
])


@dataclass
class PiiEngine:
    """Presidio analyzer + anonymizer, built once and reused for every message.

    ``score_threshold``: minimum Presidio score (the phone recognizer scores 0.4 without
    context words, which need lemmas a blank pipeline does not have).
    ``spacy_model``: name of an installed spaCy pipeline to enable ``PERSON``; None = no NER.
    """

    score_threshold: float = 0.35
    spacy_model: str | None = None
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IN", "CA", "BR", "AU")
    recognizers: list[str] = field(default_factory=list, init=False)
    person_names: str = field(default="disabled: no spacy_model configured", init=False)

    def __post_init__(self):
        from presidio_analyzer import AnalyzerEngine, PatternRecognizer, Pattern, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
        from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer,
                                                              IbanRecognizer, IpRecognizer)
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig
        import tldextract

        # Bundled suffix list only: no HTTP fetch, no cache directory written.
        offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        class OfflineEmailRecognizer(TokenScoped, EmailRecognizer):
            token_chars = "@"

            def validate_result(self, pattern_text: str):
                return offline_tld(pattern_text).fqdn != ""

        # Every IP pattern has a `:` (IPv6) or a `.` and digits (IPv4); every profile URL a `/`.
        class ScopedIpRecognizer(TokenScoped, IpRecognizer):
            token_chars = ".:"
            needs = staticmethod(lambda token: ":" in token or _DIGIT.search(token) is not None)

        class ProfileUrlRecognizer(TokenScoped, PatternRecognizer):
            token_chars = "/"

        # The phone recognizer runs after the others, on the digit runs they left (see anonymize).
        self.phone = candidate_phone_recognizer(self.phone_regions)
        recs = [
            OfflineEmailRecognizer(),
            ScopedIpRecognizer(name="IpRecognizer"),
            CreditCardRecognizer(),
            IbanRecognizer(),
            ProfileUrlRecognizer(supported_entity="PROFILE_URL", name="ProfileUrlRecognizer",
                                 patterns=[Pattern("profile_url", PROFILE_URL_RE, 0.9)]),
            # Local numbers without an area code ("call me at 555-0147"): libphonenumber needs a
            # full national number, so it never matches these. 3+4 digits with one separator,
            # not inside a longer digit/dash run (dates like 2013-01-07 and ids do not match).
            PatternRecognizer(supported_entity="PHONE_NUMBER", name="LocalPhoneRecognizer",
                              patterns=[Pattern("local_phone", LOCAL_PHONE_RE, 0.5)]),
        ]
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        if self.spacy_model:
            if importlib.util.find_spec(self.spacy_model) is None:
                self.person_names = f"disabled: spaCy pipeline {self.spacy_model!r} is not installed"
                log.warning("anonymize: %s; person names will not be detected", self.person_names)
            else:
                from presidio_analyzer.nlp_engine import SpacyNlpEngine
                from presidio_analyzer.predefined_recognizers import SpacyRecognizer

                nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": self.spacy_model}])
                recs.append(SpacyRecognizer(supported_entities=["PERSON"]))
                self.person_names = f"enabled: spaCy pipeline {self.spacy_model!r}"
        nlp_engine.load()
        registry = RecognizerRegistry(recognizers=recs, supported_languages=["en"])
        self.nlp_engine = nlp_engine
        self._no_op_artifacts = None if self.needs_all_messages else nlp_engine.process_text("x", "en")
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                                       context_aware_enhancer=None if self.needs_all_messages else _context_enhancer())
        self.anonymizer = AnonymizerEngine()
        self.recognizers = sorted(r.name for r in [*recs, self.phone])
        self.entities = sorted({e for r in [*recs, self.phone] for e in r.supported_entities})
        self.operators = {e: OperatorConfig("replace", {"new_value": PLACEHOLDERS[ENTITY_TYPES[e]]})
                          for e in self.entities}

    @property
    def needs_all_messages(self) -> bool:
        """With NER active the regex prefilter cannot tell which messages hold names."""
        return self.person_names.startswith("enabled")

    def anonymize(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every detected PII span replaced by its placeholder, and the types replaced
        (one entry per replacement, in text order)."""
        results = self.analyze(text)
        if not results:
            return text, []
        out = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self.operators)
        items = sorted(out.items, key=lambda i: i.start)
        return out.text, [ENTITY_TYPES[i.entity_type] for i in items]

    def analyze(self, text: str) -> list:
        """Presidio's results for ``text``: the analyzer with every recognizer but the phone one, then
        :class:`CandidatePhoneRecognizer` on the digit runs not inside a span the others found, merged
        as the analyzer merges (score threshold, context words when a spaCy pipeline gives lemmas,
        ``remove_duplicates``). A phone span inside another type's span never survives the
        anonymizer's conflict resolution (the containing span wins), so skipping those runs (cards,
        IBANs, IPs: most of libphonenumber's work) does not change what is replaced."""
        from presidio_analyzer import EntityRecognizer

        # The no-op engine's artifacts are the same empty ones for every text: made once.
        artifacts = (self._no_op_artifacts if self._no_op_artifacts is not None
                     else self.nlp_engine.process_text(text, "en"))
        results = self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                        score_threshold=self.score_threshold, nlp_artifacts=artifacts)
        claimed = [(r.start, r.end) for r in results if r.entity_type != self.phone.supported_entities[0]]
        phones = self.phone.analyze(text, self.phone.supported_entities, artifacts, claimed=claimed)
        if not phones:
            return results
        phones = self.analyzer.context_aware_enhancer.enhance_using_context(text, phones, artifacts, [self.phone])
        phones = [r for r in phones if r.score >= self.score_threshold]
        return EntityRecognizer.remove_duplicates(results + phones) if phones else results

    def summary(self) -> dict:
        return {"recognizers": self.recognizers, "entities": self.entities, "person_names": self.person_names,
                "score_threshold": self.score_threshold, "nlp_engine": "spacy" if self.needs_all_messages else "no-op"}


_DIGIT = re.compile(r"\d")


class TokenScoped:
    """Mixin for a Presidio pattern recognizer whose matches never contain whitespace and whose
    look-arounds and ``\\b`` treat whitespace like the end of the text (e-mail, IP, profile URL):
    its stock ``analyze`` runs once on the whitespace-free tokens that have a character every
    match has (``token_chars``, and ``needs(token)`` if set), joined by single spaces, and the
    spans are moved back. A dropped token holds no match, and each kept token sees the same
    boundaries as in the text, so the results are the stock ones; the patterns just scan a
    fraction of the text (the profile-URL pattern tries every position of a long message)."""

    token_chars = ""
    needs = None

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        parts, starts, pos = [], [], 0
        for m in _token_regex(self.token_chars).finditer(text):
            tok = m.group()
            if self.needs is None or self.needs(tok):
                parts.append(tok)
                starts.append((pos, m.start()))
                pos += len(tok) + 1
        if not parts:
            return []
        results = super().analyze(" ".join(parts), entities, nlp_artifacts, regex_flags)
        for r in results:
            joined, original = starts[bisect.bisect_right(starts, (r.start, len(text) + 1)) - 1]
            r.start, r.end = r.start - joined + original, r.end - joined + original
        return results


@functools.lru_cache(maxsize=None)
def _token_regex(chars: str):
    """Whole whitespace-free tokens holding one of ``chars`` (the `regex` module's ``\\s``: the one
    Presidio's patterns use; the look-behind keeps the scan linear in a long token without them)."""
    import regex

    return regex.compile(rf"(?<!\S)\S*[{regex.escape(chars)}]\S*")


def _context_enhancer():
    """The context enhancer for the no-op NLP engine: Presidio's (lemma-based) one is only run when
    there is something it can use. Without tokens and without request context no score can change
    (Presidio warns as much: its every context search is over one empty word), yet it deep-copies
    every result first, ~30% of the analyzer's time on a string with several values. With a
    spaCy pipeline the analyzer keeps its stock enhancer."""
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer, LemmaContextAwareEnhancer

    class TokenlessContextEnhancer(ContextAwareEnhancer):
        def __init__(self):
            self.lemma = LemmaContextAwareEnhancer()
            super().__init__(self.lemma.context_similarity_factor, self.lemma.min_score_with_context_similarity,
                             self.lemma.context_prefix_count, self.lemma.context_suffix_count)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            if not context and nlp_artifacts is not None and not nlp_artifacts.tokens:
                return list(raw_results)
            return self.lemma.enhance_using_context(text, raw_results, nlp_artifacts, recognizers, context)

    return TokenlessContextEnhancer()


def phone_windows(text: str, claimed=(), before: int = 2, after: int = 24) -> list[tuple[int, int, list]]:
    """The parts of ``text`` libphonenumber is run on: (start, end, candidates) per window, where
    candidates are the (first digit, end) spans of :data:`PHONE_CANDIDATE_RE` matches not inside a
    ``claimed`` span, and the window adds ``before``/``after`` characters of context (what the
    matcher looks at around a number: a letter or `%` next to it, a `:12` time suffix, an extension
    such as ` ext. 12`), never cutting a digit run; overlapping windows are merged."""
    out: list[tuple[int, int, list]] = []
    n = len(text)
    for m in PHONE_CANDIDATE_RE.finditer(text):
        a, b = m.span()
        first = a + len(m.group()) - len(m.group().lstrip(_PHONE_LEAD_CHARS))
        if any(s <= first and b <= e for s, e in claimed):
            continue
        # Context stops at a claimed span (a card or IP next to the number is not the matcher's
        # business, only costly), keeping at least one character each side for the letter/`%` checks.
        lo = max([e for _, e in claimed if e <= a], default=0)
        hi = min([s for s, _ in claimed if s >= b], default=n)
        ws = min(max(a - before, lo), max(a - 1, 0))
        we = max(min(b + after, hi), min(b + 1, n))
        while lo < ws and text[ws - 1].isdigit():
            ws -= 1
        while we < hi and text[we].isdigit():
            we += 1
        if out and ws <= out[-1][1]:
            out[-1] = (out[-1][0], max(we, out[-1][1]), out[-1][2] + [(first, b)])
        else:
            out.append((ws, we, [(first, b)]))
    return out


_PHONE_LEAD_CHARS = "+\uFF0B(\uFF08[\uFF3B"


PHONE_MEMO_MAX = 100_000  # windows remembered by a CandidatePhoneRecognizer (about 200 B each)


def candidate_phone_recognizer(regions: tuple[str, ...], leniency: int = 1):
    """A :class:`CandidatePhoneRecognizer` (Presidio's ``PhoneRecognizer`` run on candidate windows)."""
    import phonenumbers
    from presidio_analyzer import EntityRecognizer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class CandidatePhoneRecognizer(PhoneRecognizer):
        """Presidio's phone recognizer (libphonenumber's ``PhoneNumberMatcher`` per region, same
        leniency, score and context words), run only on :func:`phone_windows` of the text instead
        of the whole text, and per window only until a region has matched every candidate in it
        (the stock recognizer runs all regions over the whole text and keeps the union; once each
        run of digits is inside a match, a later region could only add the same digits again, or
        a span around them, e.g. with another reading of an extension). A digit run of fewer than
        7 digits is never a candidate (the stock one matched some shorter runs; on the real
        samples only two, both ids in URLs: `sid=134092`, `/q/1644/31`).

        What the matchers find in a window depends on nothing but the window's text and its
        candidates, so it is remembered per (window, candidates), up to :data:`PHONE_MEMO_MAX`
        windows: the same URL, date or signature recurs across a dump's messages (more than
        half of the windows of the generated Reddit month are repeats)."""

        def analyze(self, text, entities, nlp_artifacts=None, claimed=()):
            results = []
            memo = self.__dict__.setdefault("_window_memo", {})
            for ws, we, cands in phone_windows(text, claimed):
                key = (text[ws:we], tuple((a - ws, b - ws) for a, b in cands))
                found = memo.get(key)
                if found is None:
                    found = self._window_matches(*key)
                    if len(memo) >= PHONE_MEMO_MAX:
                        memo.clear()
                    memo[key] = found
                results += [self._get_recognizer_result(_Span(ws + s, ws + e), text, region, nlp_artifacts)
                            for (s, e), region in found]
            return EntityRecognizer.remove_duplicates(results)

        def _window_matches(self, window: str, cands: tuple) -> tuple:
            """((start, end), region) of the matches in ``window``, regions in turn until every
            candidate span is inside a match."""
            found: dict = {}
            for region in self.supported_regions:
                for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=self.leniency):
                    found.setdefault((match.start, match.end), region)
                if all(any(s <= a and b <= e for s, e in found) for a, b in cands):
                    break
            return tuple(found.items())

    return CandidatePhoneRecognizer(supported_regions=regions, leniency=leniency, name="CandidatePhoneRecognizer")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
