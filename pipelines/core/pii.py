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
messages it flags are sent to Presidio.
"""

from __future__ import annotations

import importlib.util
import logging
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
                                                              IbanRecognizer, IpRecognizer, PhoneRecognizer)
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig
        import tldextract

        # Bundled suffix list only: no HTTP fetch, no cache directory written.
        offline_tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        class OfflineEmailRecognizer(EmailRecognizer):
            def validate_result(self, pattern_text: str):
                return offline_tld(pattern_text).fqdn != ""

        recs = [
            OfflineEmailRecognizer(),
            PhoneRecognizer(supported_regions=self.phone_regions),
            IpRecognizer(),
            CreditCardRecognizer(),
            IbanRecognizer(),
            PatternRecognizer(supported_entity="PROFILE_URL", name="ProfileUrlRecognizer",
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
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        self.anonymizer = AnonymizerEngine()
        self.recognizers = sorted(r.name for r in recs)
        self.entities = sorted({e for r in recs for e in r.supported_entities})
        self.operators = {e: OperatorConfig("replace", {"new_value": PLACEHOLDERS[ENTITY_TYPES[e]]})
                          for e in self.entities}

    @property
    def needs_all_messages(self) -> bool:
        """With NER active the regex prefilter cannot tell which messages hold names."""
        return self.person_names.startswith("enabled")

    def anonymize(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every detected PII span replaced by its placeholder, and the types replaced
        (one entry per replacement, in text order)."""
        results = self.analyzer.analyze(text=text, language="en", entities=self.entities,
                                        score_threshold=self.score_threshold)
        if not results:
            return text, []
        out = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self.operators)
        items = sorted(out.items, key=lambda i: i.start)
        return out.text, [ENTITY_TYPES[i.entity_type] for i in items]

    def summary(self) -> dict:
        return {"recognizers": self.recognizers, "entities": self.entities, "person_names": self.person_names,
                "score_threshold": self.score_threshold, "nlp_engine": "spacy" if self.needs_all_messages else "no-op"}
