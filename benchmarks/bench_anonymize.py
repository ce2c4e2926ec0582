"""Anonymise throughput and recall vs plain per-message Presidio, and mention precision/recall on
labelled real messages. `python -m benchmarks.bench_anonymize [--messages N]` (default 6,000;
the issue-13 target, 15k msgs/s, is measured with `--messages 100000`).

Input: the real sample messages replayed to N rows (each replay with new message ids and new
author ids, so the name table grows with N like a real corpus), with PII planted in 5% of them
(e-mail, phone, IP, card, IBAN, profile URL, `u/name` mention; the phone in turn in each of the
six formats the demo corpus plants, `PHONE_FORMATS`, and recall is also printed per format). Polars runs on 2 threads
(`POLARS_MAX_THREADS`, unless set), as on the 2-core machine a user runs this on. Set-up
(Presidio's engine construction) is timed apart from the per-message cost, for both sides. The
baseline is what one would write first: Presidio's default recognizers (no model) analyze +
anonymize on every message; at about 1k msgs/s it runs on the first `--baseline` messages
(default 6,000, same planting rate) and its rate is per message of those.

Mentions: `mention_labels.jsonl` holds 240 (message_id, key) pairs of the real samples (every
format but Diplomacy), labelled by reading the message: does the plain word `key` (a known
author's name, not in an `@`/`u/`/`name:` form) refer to that person (`person: true`), or is it
an ordinary word or someone else (a historian, a subreddit)? The pairs are a seeded uniform
sample (random.Random(0).shuffle of the pairs sorted by message_id and key, first 240) of
every message-name pair where a name of the message's community (or a platform-wide name)
occurs as a plain whole word and the old stoplist rule or the word-frequency rule counted the
name as mentionable. A pair counts as replaced when the key no longer occurs as a whole word in
the anonymised text. Only ids and keys are stored, never message text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "2")  # before Polars starts its pool

import polars as pl

from benchmarks._inputs import REAL, real_messages
from pipelines.core import storage
from pipelines.stages.anonymize import AnonymizeConfig, anonymize_messages
from pipelines.stages.dedup import dedup_records
from pipelines.stages.ingest import ingest
from pipelines.core.pii import PiiEngine
from schemas import MESSAGES as M

N = 6000
SECRET = b"bench-secret"
# The phone formats of the demo corpus (pipelines/sample/talk.py), with a 4-digit serial `{n}`.
PHONE_FORMATS = ("(212) 555-{n}", "+1 415-555-{n}", "+44 20 7946 {n}", "020 7946 {n}", "+61 2 5550 {n}", "555-{n}")


def planted_frame(n: int = N) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    base = real_messages()
    reps = -(-n // base.height)
    # Replay r > 0 gets new message ids and new author ids (names kept, so mentions in the text
    # still name known authors); replay 0 is the real sample as it is.
    df = pl.concat([base.with_columns((pl.col(M.message_id) + f"#{r}").alias(M.message_id),
                                      (pl.col(M.author_id) + (f"~{r}" if r else "")).alias(M.author_id))
                    for r in range(reps)]).head(n)
    texts, plants = df[M.text].to_list(), []
    names = df[M.author_name].to_list()
    for i in range(0, n, 20):
        k = len(plants)
        phone = PHONE_FORMATS[(k // 7) % len(PHONE_FORMATS)].format(n=f"{1000 + k % 9000:04d}")
        vals = {"EMAIL": f"someone{k}@mail-example.com", "PHONE": phone,
                "IP": f"172.16.{k % 250}.{k % 200 + 1}", "CREDIT_CARD": "4111 1111 1111 1111",
                "IBAN": "DE89 3704 0044 0532 0130 00", "URL": f"https://twitter.com/handle{k}",
                "MENTION": f"u/{names[i] or 'someone'}"}
        texts[i] += " | " + " ; ".join(vals.values())
        plants.extend((i, t, v) for t, v in vals.items())
    return df.with_columns(pl.Series(M.text, texts)), plants


def plain_presidio_engine():
    """Presidio's default recognizers with no model (what one would write first): (analyzer, anonymizer)."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer
    from presidio_anonymizer import AnonymizerEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    # The stock e-mail recognizer would fetch the suffix list over HTTP; the same recognizer with
    # tldextract's bundled list instead (as in pipelines/core/pii.py, without its token scoping).
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return offline(pattern_text).fqdn != ""

    registry.remove_recognizer("EmailRecognizer")
    registry.add_recognizer(OfflineEmailRecognizer())
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"]), AnonymizerEngine()


def plain_presidio(texts: list[str], engines=None) -> list[str]:
    analyzer, anonymizer = engines or plain_presidio_engine()
    return [anonymizer.anonymize(text=t, analyzer_results=analyzer.analyze(text=t, language="en")).text for t in texts]


def recall(out: list[str], plants) -> dict:
    by = {}
    for i, t, v in plants:
        hit, tot = by.get(t, (0, 0))
        by[t] = (hit + (v not in out[i]), tot + 1)
    total = sum(h for h, _ in by.values()) / sum(t for _, t in by.values())
    return {"all": round(total, 3), **{t: round(h / n, 3) for t, (h, n) in sorted(by.items())}}


def phone_recall(out: list[str], plants) -> dict:
    """Recall of the planted phones per format (``PHONE_FORMATS``)."""
    by = {}
    for i, t, v in plants:
        if t == "PHONE":
            fmt = next(f for f in PHONE_FORMATS if re.fullmatch(re.escape(f).replace(r"\{n\}", r"\d{4}"), v))
            hit, tot = by.get(fmt, (0, 0))
            by[fmt] = (hit + (v not in out[i]), tot + 1)
    return {f: round(h / n, 3) for f, (h, n) in by.items()}


LABELS = Path(__file__).with_name("mention_labels.jsonl")
LABELLED_SOURCES = {"reddit": ["reddit/*.zst", "reddit/*.ndjson"], "stackexchange": ["stackexchange"],
                    "discourse": ["discourse/*.json"], "discord": ["discord/dce-frontend-example-guild/*.json"],
                    "slack": ["slack/slack-export-viewer_testarchive"], "telegram": ["telegram/*.json"],
                    "irc": ["irc/ubuntu/*/*/*/*.txt"]}


def labelled_messages() -> pl.DataFrame:
    """Every real sample but Diplomacy (its authors are game roles with no names) after record dedup:
    the messages the labels were drawn from (name tables need all of them)."""
    with tempfile.TemporaryDirectory() as d:
        for fmt, pats in LABELLED_SOURCES.items():
            ingest(fmt, [str(REAL / p) for p in pats], f"{d}/raw/{fmt}", f"{d}/q/{fmt}")
        return dedup_records(storage.read(f"{d}/raw"))[0]


def mention_scores(out: pl.DataFrame, labels: list[dict]) -> dict:
    """Precision and recall of plain-word mention replacement on the labelled pairs."""
    text = dict(zip(out[M.message_id].to_list(), out[M.text].to_list()))
    tp = fp = fn = 0
    for lab in labels:
        kept = re.search(rf"(?<!\w){re.escape(lab['key'])}(?!\w)", text[lab["message_id"]], re.IGNORECASE)
        if not kept:
            tp, fp = tp + lab["person"], fp + (not lab["person"])
        elif lab["person"]:
            fn += 1
    return {"precision": round(tp / max(tp + fp, 1), 3), "recall": round(tp / max(tp + fn, 1), 3),
            "replaced": tp + fp, "persons": tp + fn}


def mentions_report(engine: PiiEngine) -> None:
    labels = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    df = labelled_messages()
    print(f"mentions: {len(labels)} labelled name occurrences in real messages, "
          f"{sum(lab['person'] for lab in labels)} of them refer to the person")
    # 99: the frequency rule off (length, digits and community rules only); the default is 3.5
    for zipf in (99.0, 5.0, 4.0, 3.5, 3.0):
        out, _ = anonymize_messages(df, SECRET, AnonymizeConfig(common_word_zipf=zipf), engine)
        tag = " (default)" if zipf == AnonymizeConfig().common_word_zipf else ""
        print(f"  common_word_zipf {zipf:>4}{tag:10}: {mention_scores(out, labels)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=N, help="messages anonymised by the stage (generated by replay)")
    ap.add_argument("--baseline", type=int, default=N, help="messages given to plain per-message Presidio")
    ap.add_argument("--no-mentions", action="store_true", help="skip the labelled mention report")
    args = ap.parse_args(argv)
    df, plants = planted_frame(args.messages)
    print(f"messages: {df.height}, planted PII values: {len(plants)} in {len(plants) // 7} messages; "
          f"POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']}, {os.cpu_count()} CPUs")
    t = time.perf_counter()
    engine = PiiEngine()
    setup_s = time.perf_counter() - t
    anonymize_messages(df.head(500), SECRET, AnonymizeConfig(), engine)  # first-call costs (regex compiles, wordfreq)
    t, cpu = time.perf_counter(), time.process_time()
    out, stats = anonymize_messages(df, SECRET, AnonymizeConfig(), engine)
    ours_s, ours_cpu = time.perf_counter() - t, time.process_time() - cpu
    nb = min(args.baseline, df.height)
    texts = df[M.text].to_list()[:nb]
    t = time.perf_counter()
    engines = plain_presidio_engine()
    base_setup_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    base = plain_presidio(texts, engines)
    base_s, base_cpu = time.perf_counter() - t, time.process_time() - cpu
    ours_rate, base_rate = df.height / ours_s, nb / base_s
    changed = sum(a != b for a, b in zip(base, texts)) / len(texts)
    ours_out, base_plants = out[M.text].to_list(), [p for p in plants if p[0] < nb]
    print(f"anonymize stage : {ours_rate:8.0f} msgs/s  ({ours_s:.1f} s, {ours_cpu:.1f} CPU-s for {df.height}; Presidio on "
          f"{stats['presidio_rate']:.1%} of messages, {stats['presidio_strings']} strings; set-up {setup_s:.1f} s apart)"
          f"  recall {recall(ours_out, plants)}")
    print(f"plain Presidio  : {base_rate:8.0f} msgs/s  ({base_s:.1f} s, {base_cpu:.1f} CPU-s for {nb}; set-up "
          f"{base_setup_s:.1f} s apart; altered {changed:.1%} of messages)  recall {recall(base, base_plants)}")
    print(f"phone recall per format: stage {phone_recall(ours_out, plants)}; plain Presidio {phone_recall(base, base_plants)}")
    print(f"speed ratio (stage / plain Presidio, per message): {ours_rate / base_rate:.1f}x wall, "
          f"{(df.height / ours_cpu) / (nb / base_cpu):.1f}x CPU; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    if not args.no_mentions:
        mentions_report(engine)


if __name__ == "__main__":
    main()
