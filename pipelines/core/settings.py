"""Every section of the corpus configuration file, as one typed model each, defined here once.

A model holds a section's keys with their types, defaults, allowed ranges (``Field(ge=…)``)
and meanings (``Field(description=…)``); the rest is derived from it:

* the config file loader looks a section up by class (``config.section(HistoryConfig)``);
* ``docs/configuration.md`` (``python -m pipelines.core.config_docs``; a test fails when it
  is stale);
* the Dagster resource's override fields (dagster_project/resources.py);
* ``socialcorpus build --set SECTION.KEY=VALUE`` and its ``--help`` listing;
* the build's config hash (``_BUILD_COMPLETE.json``): :func:`content_settings`.

The stages import their model from here (stages -> core); each stage module re-exports its
name, so ``from pipelines.stages.histories import HistoryConfig`` keeps working. This module
imports pydantic only: no stage, no engine, no Dagster.

Models are frozen, reject unknown keys, and check types strictly (``n = "5"`` or
``n = true`` is an error, an int where a float is expected is fine). A bad value raises
:class:`SettingsError` (a ``ValueError``) naming the section, the key and what it means;
the loader adds the file.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Reading-history sizes (pipelines/stages/histories.py re-exports them).
MAX_N = 10
MAX_K = 128
# The smallest trained vocabulary: the 256 byte symbols plus the special tokens
# (256 + len(pipelines.stages.tokenizer.SPECIAL_TOKENS); a test checks the two agree).
MIN_VOCAB_SIZE = 280
# Tokens a rendered message adds around its body: <msg> <role> <gap> ... </msg>
# (pipelines.core.render.PREFIX + SUFFIX; a test checks the two agree).
MESSAGE_FRAME_TOKENS = 4


class SettingsError(ValueError):
    """A section's values are wrong. ``problems``: (key or None, given value, what is wrong)."""

    def __init__(self, model: type["Section"], problems: list[tuple[str | None, Any, str]]):
        self.model, self.problems = model, problems
        super().__init__(self.describe())

    def describe(self, label: str | None = None) -> str:
        """The message, naming the section as ``label`` (default ``[section]``)."""
        label = label or f"[{self.model.SECTION}]"
        fields = self.model.model_fields
        unknown = sorted(k for k, _, why in self.problems if why == _UNKNOWN)
        out = [f"{label} has unknown keys {unknown}; known: {sorted(fields)}"] if unknown else []
        for key, value, why in self.problems:
            if why == _UNKNOWN:
                continue
            if key is None:
                out.append(f"{label}: {why}")
                continue
            shown = "<hidden>" if "secret" in key else repr(value)
            meaning = fields[key].description if key in fields else None
            out.append(f"{label} {key} = {shown}: {why}" + (f" ({key}: {meaning})" if meaning else ""))
        return "; ".join(out)


_UNKNOWN = "unknown key"


def _problems(e: ValidationError) -> list[tuple[str | None, Any, str]]:
    out = []
    for err in e.errors(include_url=False):
        key = str(err["loc"][0]) if err["loc"] else None
        if err["type"] == "extra_forbidden":
            out.append((key, err["input"], _UNKNOWN))
            continue
        msg = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        out.append((key, err.get("input"), msg))
    return out


class Section(BaseModel):
    """Base of every section model: frozen, unknown keys refused, types checked strictly.

    ``SECTION``: the table name in the file; ``ALIASES``: old names still read (with a
    warning); ``HASH_KEY``: the key under which the section's values enter the build's
    config hash, None for sections that cannot change a build's output (Spark tuning,
    the Dagster schedule); ``RUN_KEYS``: keys of a hashed section that change how a build
    runs but not what it writes (worker processes), left out of the hash.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    SECTION: ClassVar[str]
    ALIASES: ClassVar[tuple[str, ...]] = ()
    HASH_KEY: ClassVar[str | None] = None
    RUN_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise SettingsError(type(self), _problems(e)) from None


# ---------------------------------------------------------------------------------- stages

class AnonymizeConfig(Section):
    """The `[anonymize]` config section: how names, handles and PII are found and replaced."""

    SECTION: ClassVar[str] = "anonymize"
    HASH_KEY: ClassVar[str | None] = "anonymize"
    RUN_KEYS: ClassVar[tuple[str, ...]] = ("processes",)

    demo_secret: str | None = Field(None, repr=False, description=(
        "a fixed pseudonym key for the demo configuration only (labelled as such); real builds take the key "
        "from $SOCIALCORPUS_SECRET or the Dagster resource."))
    spacy_model: str | None = Field(None, description=(
        "installed spaCy pipeline name enabling PERSON detection (None: no NER)."))
    presidio_score_threshold: float = Field(0.35, description=(
        "minimum Presidio score to replace a span (phones score 0.4)."))
    min_name_length: int = Field(3, ge=1, description=(
        "shortest display name / handle replaced where it occurs as a plain word."))
    min_numeric_id_length: int = Field(6, ge=1, description="shortest all-digit author id replaced as a plain word.")
    common_word_zipf: float = Field(3.5, description=(
        "a one-word name at least this frequent in English (wordfreq Zipf) is a mention only in explicit forms."))
    platform_name_zipf: float = Field(4.5, description=(
        "a multi-word name with a word rarer than this (Zipf) is matched platform-wide."))
    extra_stopwords: tuple[str, ...] = Field((), description=(
        "more words never taken as plain-name mentions (compared in lower case)."))
    batch_rows: int = Field(50_000, ge=1, description="rows per Arrow batch handed to `anonymize_batch`.")
    processes: int = Field(1, ge=1, description=(
        "worker processes that anonymise the batches on the Polars engine (Presidio and the mention pass are "
        "Python, one core each); 1 runs them in the build's own process. More is faster on more cores and costs "
        "about 1 GB of memory per worker (each imports Presidio and holds its batches; docs/stages/anonymize.md). "
        "Only an input of more than one batch starts workers. Spark ignores it: its Python workers are the "
        "executors' cores."))

    @field_validator("extra_stopwords", mode="before")
    @classmethod
    def _lower(cls, v):
        if isinstance(v, (list, tuple)):
            return tuple(w.lower() if isinstance(w, str) else w for w in v)
        return v

    def __repr__(self) -> str:  # never show the demo secret in logs or errors
        return (f"AnonymizeConfig(spacy_model={self.spacy_model!r}, presidio_score_threshold="
                f"{self.presidio_score_threshold}, min_name_length={self.min_name_length}, demo_secret="
                f"{'<set>' if self.demo_secret else None})")

    __str__ = __repr__


class NearDupConfig(Section):
    """The `[neardup]` config section: MinHash/LSH near-duplicate detection."""

    SECTION: ClassVar[str] = "neardup"
    HASH_KEY: ClassVar[str | None] = "neardup"

    num_perm: int = Field(128, ge=1, description="MinHash permutations (signature length).")
    bands: int = Field(32, ge=1, description=(
        "LSH bands; bands * rows <= num_perm. With 32 x 4 a pair at Jaccard 0.5 becomes a candidate with "
        "probability 0.87, at 0.6 with 0.99, at 0.3 with 0.23."))
    rows: int = Field(4, ge=1, description="rows per LSH band (see `bands`).")
    shingle_size: int = Field(3, ge=1, description=(
        "words per shingle (3: robust to reordered sentences and single-word edits in short social messages)."))
    min_tokens: int = Field(8, ge=1, description="messages with fewer words are never candidates.")
    threshold: float = Field(0.5, gt=0.0, le=1.0, description="minimum estimated Jaccard similarity of a verified pair.")
    mass_dup_authors: int = Field(3, ge=2, description=(
        "a cluster with at least this many distinct authors is flagged mass_dup."))
    seed: int = Field(1, description="MinHash permutation seed (datasketch's default is 1).")

    @model_validator(mode="after")
    def _banding(self):
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class HistoryConfig(Section):
    """Reading histories: how much an author had read (N) and how much of their own past is kept (K)."""

    SECTION: ClassVar[str] = "histories"
    ALIASES: ClassVar[tuple[str, ...]] = ("history",)
    HASH_KEY: ClassVar[str | None] = "history"  # the section's name when the hash was defined: keep it

    n: int = Field(5, ge=1, le=MAX_N, description=(
        f"messages in a reading history, 1 to {MAX_N} (ancestors then siblings in reply trees, previous messages "
        "in linear threads)."))
    k: int = Field(10, ge=0, le=MAX_K, description=(
        f"the author's own previous messages kept with each reading history, 0 to {MAX_K}; the examples stage uses "
        "the same K for the own and interlocutor streams."))


class ExamplesConfig(Section):
    """Pair examples: caps that bound the blow-up, the interlocutor stream option, the splits."""

    SECTION: ClassVar[str] = "examples"
    HASH_KEY: ClassVar[str | None] = "examples"

    max_per_target: int = Field(5, ge=1, description=(
        "examples kept per target message, one per interlocutor (the blow-up bound)."))
    max_per_pair: int = Field(1000, ge=1, description=(
        "examples kept per ordered (author, interlocutor) pair, so chatty pairs cannot dominate."))
    max_per_author: int = Field(5000, ge=1, description="examples kept per author as the perspective.")
    other_public: bool = Field(False, description=(
        "also put the interlocutor's public messages before the window in their stream, not only what the author "
        "had read (private platforms such as Diplomacy never add)."))
    split_salt: str = Field("socialcorpus-v1", min_length=1, description=(
        "salt of the thread hash that assigns splits; change it to draw another split."))
    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of threads in validation.")
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0, description=(
        "share of threads in test (unused for dated threads when temporal_cutoff is set); validation_fraction + "
        "test_fraction must be below 1."))
    temporal_cutoff: str | None = Field(None, description=(
        "ISO date or datetime (UTC if no zone); threads with any message after it go to test, earlier ones split "
        "train/validation by hash; ordinal timelines keep the hash split."))
    user_disjoint: bool = Field(False, description=(
        "hold out a hashed share (validation + test fraction) of users; train keeps examples whose two users are "
        "both kept, validation/test those whose two users are both held out."))

    @field_validator("temporal_cutoff", mode="before")
    @classmethod
    def _toml_date(cls, v):
        # A bare TOML date or datetime (`temporal_cutoff = 2013-01-05`) arrives as an object.
        return str(v) if isinstance(v, (date, datetime, time)) else v

    @model_validator(mode="after")
    def _splits(self):
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"examples validation_fraction + test_fraction = "
                             f"{self.validation_fraction + self.test_fraction}: must be below 1 "
                             "(something must be left for train)")
        if self.temporal_cutoff is not None:
            self.cutoff()  # validates
        return self

    def cutoff(self) -> datetime | None:
        """`temporal_cutoff` as an aware UTC datetime (None when unset)."""
        if self.temporal_cutoff is None:
            return None
        try:
            dt = datetime.fromisoformat(str(self.temporal_cutoff))
        except ValueError as e:
            raise ValueError(f"examples temporal_cutoff = {self.temporal_cutoff!r}: not an ISO date "
                             "(use e.g. \"2013-01-05\" or \"2013-01-05T12:00:00Z\")") from e
        return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class TokenizerConfig(Section):
    """``[tokenizer]``: how the vocabulary is made."""

    SECTION: ClassVar[str] = "tokenizer"
    HASH_KEY: ClassVar[str | None] = "tokenizer"

    vocab_size: int = Field(32_000, ge=MIN_VOCAB_SIZE, description=(
        f"size of a trained vocabulary, special tokens included; at least {MIN_VOCAB_SIZE} (the 256 byte symbols "
        "plus the special tokens)."))
    path: str | None = Field(None, description=(
        "a user-supplied `tokenizer.json` (fsspec URL or path) used instead of training; missing special tokens "
        "are appended to it."))
    min_frequency: int = Field(2, ge=1, description="a merge must occur this often in the training text.")
    max_training_messages: int = Field(1_000_000, ge=1, description=(
        "train on at most this many train-split messages, taken evenly spaced in `message_id` order so the sample "
        "is deterministic."))


class ShardsConfig(Section):
    """``[shards]``: how examples become token shards."""

    SECTION: ClassVar[str] = "shards"
    HASH_KEY: ClassVar[str | None] = "shards"

    layout: Literal["reference", "flat"] = Field("reference", description=(
        "`reference` (schema version 3): each message's tokens once in a token store, example rows of "
        "references the loader assembles; `flat` (schema version 2): every example row carries its tokens "
        "(docs/shards.md)."))
    seed: int = Field(0, description="the global row shuffle within each split.")
    target_file_bytes: int = Field(128 * 2**20, ge=1, description=(
        "files are cut at about this size, estimated as tokens x `bytes_per_token` (128 MiB)."))
    row_group_rows: int = Field(512, ge=1, description="rows per Parquet row group, the loader's unit of shuffling.")
    max_message_tokens: int = Field(1024, ge=1, description=(
        "a body longer than this keeps its first `max_message_tokens` tokens (then `</msg>`); applies to targets "
        "too."))
    max_window_tokens: int = Field(2048, ge=1, description=(
        f"rendered window budget; the oldest context messages are left out until the window fits; the target is "
        f"always kept, so it is at least max_message_tokens + {MESSAGE_FRAME_TOKENS}."))
    max_stream_tokens: int = Field(2048, ge=MESSAGE_FRAME_TOKENS + 1, description=(
        "rendered budget of the own and of the interlocutor stream each; the oldest messages are left out first."))
    bytes_per_token: float = Field(1.5, gt=0.0, description=(
        "the compressed-size estimate used to cut files (measured 1.5 on the real demo corpus at a 2,000 "
        "vocabulary; tiny files run higher)."))
    examples_per_batch: int = Field(100_000, ge=1, description="examples rendered at a time (bounds peak memory).")

    @model_validator(mode="after")
    def _window_holds_a_target(self):
        if self.max_window_tokens < self.max_message_tokens + MESSAGE_FRAME_TOKENS:
            raise ValueError(f"max_window_tokens = {self.max_window_tokens} must hold a whole target: at least "
                             f"max_message_tokens + {MESSAGE_FRAME_TOKENS} = "
                             f"{self.max_message_tokens + MESSAGE_FRAME_TOKENS}")
        return self


# ------------------------------------------------------------------------ engine, schedule

class SparkConfig(Section):
    """Section `[spark]`: the SparkSession of the Spark engine (`engine = "spark"`)."""

    SECTION: ClassVar[str] = "spark"

    master: str = Field("local[*]", description=(
        "Spark master URL (`local[*]`, `local[2]`, `spark://host:7077`, `yarn`, `k8s://…`)."))
    app_name: str = Field("socialcorpus", description="the application name shown by the cluster manager.")
    conf: dict[str, Any] = Field(default_factory=dict, description=(
        'any `spark.*` settings, e.g. `{ "spark.executor.memory" = "8g" }`.'))
    shuffle_partitions: int = Field(8, ge=1, description=(
        "`spark.sql.shuffle.partitions` unless `conf` sets it (small for local runs)."))

    @field_validator("conf")
    @classmethod
    def _spark_keys(cls, v):
        bad = [k for k in v if not str(k).startswith("spark.")]
        if bad:
            raise ValueError(f"[spark] conf keys must start with 'spark.', got {bad}")
        return v


class ScheduleConfig(Section):
    """The ``[schedule]`` section: the Dagster full rebuild and landing sensor (dagster_project/automation.py)."""

    SECTION: ClassVar[str] = "schedule"

    cron: str = Field("0 3 * * 0", description="when the full rebuild runs (default Sundays 03:00).")
    timezone: str = Field("UTC", description="the cron's time zone.")
    landing: str | None = Field(None, description=(
        "fsspec URL of the folder new dump files arrive in (None: the sensor idles). Landed files are ingested "
        "when a configured source's `paths` match them; a relative path is relative to the config file."))
    sensor_interval_s: int = Field(60, ge=1, description="how often the landing sensor lists the folder (seconds).")


# ---------------------------------------------------------------------------- the registry

MODELS: tuple[type[Section], ...] = (AnonymizeConfig, NearDupConfig, HistoryConfig, ExamplesConfig,
                                     TokenizerConfig, ShardsConfig, SparkConfig, ScheduleConfig)
SECTIONS: dict[str, type[Section]] = {m.SECTION: m for m in MODELS}  # file order, as documented
ALIASES: dict[str, str] = {a: m.SECTION for m in MODELS for a in m.ALIASES}  # old name -> section


def model_for(key: str | type[Section]) -> type[Section]:
    """The model of a section name (or old alias), or the model itself; KeyError when unknown."""
    if isinstance(key, type):
        if key not in MODELS:
            raise KeyError(f"{key.__name__} is not a config section model; known: "
                           f"{', '.join(m.__name__ for m in MODELS)}")
        return key
    return SECTIONS[ALIASES.get(key, key)]


def content_settings(sections: dict[str, Section]) -> dict[str, dict[str, Any]]:
    """What of the sections decides a build's content, for the config hash: ``{HASH_KEY: values}``
    of every section with a HASH_KEY (defaults included), secrets and RUN_KEYS left out."""
    return {m.HASH_KEY: {k: v for k, v in sections[m.SECTION].model_dump().items()
                         if "secret" not in k and k not in m.RUN_KEYS}
            for m in MODELS if m.HASH_KEY}
