"""What every stage returns, on both engines: :class:`StageResult`, and its conservation check.

A stage counts what came in, what went out and why the rest was dropped. Most stages have one
flow (rows in = rows out + dropped); some count more than one (ingest: records = messages +
quarantined + skipped; examples: messages in = targets + message drops, and candidates =
examples + capped candidates). Each flow is a :class:`Flow`; :meth:`StageResult.conservation`
checks that every flow balances. The Dagster `counts_conserved` check, the CLI summary and
the tests all read it from here.

:meth:`StageResult.summary` is the stage's entry in the JSON build summary: the same flat
keys as before this type existed (``rows_in``, ``rows_out``, ``dropped_by_reason``, then
the stage's own figures, ``engine``, ``seconds``, ``peak_rss_mb``), so scheduled jobs that read the JSON
keep working. Every stage's entry carries ``rows_in``, ``rows_out`` and ``dropped_by_reason``;
where a stage's summary used other names for the same numbers before (``dropped`` for the
drops of dedup, anonymize, neardup, tokenizer and shards; ``records``, ``messages``,
``quarantined``, ``skipped`` for ingest), those keys stay as figures with the same values, as
aliases for the jobs that read them.

:meth:`StageResult.from_summary` is the way back from such a flat entry (the JSON file, a
Dagster asset's metadata, or a stage that still returns a dict) to a StageResult; it reads the
three count keys and nothing else by guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from pipelines.core.checks import CheckResult

COUNT_KEYS = ("rows_in", "rows_out", "dropped_by_reason")
RUN_KEYS = ("engine", "seconds", "peak_rss_mb")
LEGACY_DROPPED = "dropped"  # the older name of ``dropped_by_reason`` in some stages' summaries


@dataclass(frozen=True)
class Flow:
    """One conservation law: ``inflow == outflow + sum(dropped_by_reason)``."""

    name: str  # what is counted, e.g. "rows", "records", "candidates"
    inflow: int
    outflow: int
    dropped_by_reason: Mapping[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return sum(int(v) for v in self.dropped_by_reason.values())

    @property
    def off_by(self) -> int:
        return self.inflow - self.outflow - self.dropped

    def describe(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped_by_reason.items()) if v)
        return (f"{self.name}: {self.inflow} in = {self.outflow} out + {self.dropped} dropped"
                + (f" ({reasons})" if reasons else "")
                + ("" if self.off_by == 0 else f"; {self.off_by:+d} unaccounted"))


@dataclass(frozen=True)
class StageResult:
    """Rows in, rows out, dropped by reason and the stage's own figures."""

    stage: str
    rows_in: int
    rows_out: int
    dropped_by_reason: Mapping[str, int] = field(default_factory=dict)
    figures: Mapping[str, Any] = field(default_factory=dict)  # stage-specific numbers, JSON-able
    flows: tuple[Flow, ...] = ()  # conservation laws; empty: the one rows flow
    engine: str = ""
    seconds: float | None = None
    peak_rss_mb: float | None = None  # the stage's peak resident memory (pipelines/core/memory.py)

    def laws(self) -> tuple[Flow, ...]:
        return self.flows or (Flow("rows", self.rows_in, self.rows_out, self.dropped_by_reason),)

    def conservation(self) -> CheckResult:
        laws = self.laws()
        bad = [f for f in laws if f.off_by]
        return CheckResult(f"{self.stage}_counts", not bad, sum(abs(f.off_by) for f in bad),
                           "; ".join(f.describe() for f in laws), [f.name for f in bad])

    def with_run(self, engine: str | None = None, seconds: float | None = None,
                 peak_rss_mb: float | None = None) -> "StageResult":
        return replace(self, engine=self.engine if engine is None else engine,
                       seconds=self.seconds if seconds is None else seconds,
                       peak_rss_mb=self.peak_rss_mb if peak_rss_mb is None else peak_rss_mb)

    def summary(self) -> dict:
        """The JSON build summary entry (flat, as before: see the module docstring)."""
        out: dict[str, Any] = {"rows_in": self.rows_in, "rows_out": self.rows_out,
                               "dropped_by_reason": dict(sorted(self.dropped_by_reason.items()))}
        out.update(self.figures)
        if self.engine:
            out["engine"] = self.engine
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.peak_rss_mb is not None:
            out["peak_rss_mb"] = self.peak_rss_mb
        return out

    @property
    def dropped(self) -> int:
        return sum(int(v) for v in self.dropped_by_reason.values())

    @classmethod
    def from_summary(cls, stage: str, summary: Mapping[str, Any], flows: Iterable[Flow] = ()) -> "StageResult":
        """The StageResult whose :meth:`summary` is ``summary`` (the inverse, up to key order).

        ``rows_in`` and ``rows_out`` are required; the drops are ``dropped_by_reason``, or, in
        a summary that predates it, ``dropped`` (a mapping; then it also stays a figure, so the
        summary keeps that key). ``engine`` and ``seconds`` are the run's; everything else is a
        figure. Raises ValueError naming the stage and the missing key.
        """
        missing = [k for k in COUNT_KEYS[:2] if not isinstance(summary.get(k), int)]
        if missing:
            raise ValueError(f"stage {stage}: its summary has no integer {' or '.join(missing)} "
                             f"(keys: {', '.join(summary) or 'none'})")
        if COUNT_KEYS[2] in summary:
            dropped = summary[COUNT_KEYS[2]]
        else:
            dropped = summary.get(LEGACY_DROPPED, {})
        if not isinstance(dropped, Mapping):
            raise ValueError(f"stage {stage}: dropped_by_reason must be a mapping of reason to count, "
                             f"not {type(dropped).__name__}")
        seconds, peak = summary.get("seconds"), summary.get("peak_rss_mb")
        return cls(stage, summary["rows_in"], summary["rows_out"], {str(k): int(v) for k, v in dropped.items()},
                   figures={k: v for k, v in summary.items() if k not in COUNT_KEYS and k not in RUN_KEYS},
                   flows=tuple(flows), engine=str(summary.get("engine") or ""),
                   seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
                   peak_rss_mb=float(peak) if isinstance(peak, (int, float)) else None)

    @classmethod
    def total(cls, stage: str, parts: Iterable["StageResult"], figures: Mapping[str, Any] | None = None,
              ) -> "StageResult":
        """Several results of one stage summed (ingest: over sources, months, partitions).

        Counts and drops are added; flows with the same name are added; ``figures`` are the
        total's own (nothing is summed into them); seconds are added when every part has them,
        and the peak memory is the largest part's when every part has one.
        """
        parts = list(parts)
        dropped: dict[str, int] = {}
        flows: dict[str, Flow] = {}
        for p in parts:
            for k, v in p.dropped_by_reason.items():
                dropped[k] = dropped.get(k, 0) + int(v)
            for f in p.flows:
                g = flows.get(f.name)
                if g is None:
                    flows[f.name] = Flow(f.name, f.inflow, f.outflow, dict(f.dropped_by_reason))
                else:
                    by = dict(g.dropped_by_reason)
                    for k, v in f.dropped_by_reason.items():
                        by[k] = by.get(k, 0) + int(v)
                    flows[f.name] = Flow(f.name, g.inflow + f.inflow, g.outflow + f.outflow, by)
        secs, peaks = [p.seconds for p in parts], [p.peak_rss_mb for p in parts]
        return cls(stage, sum(p.rows_in for p in parts), sum(p.rows_out for p in parts), dropped,
                   figures=dict(figures or {}), flows=tuple(flows.values()),
                   seconds=round(sum(secs), 3) if secs and None not in secs else None,
                   peak_rss_mb=max(peaks) if peaks and None not in peaks else None)
