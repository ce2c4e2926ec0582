"""What every stage returns, on both engines: :class:`StageResult`, and its conservation check.

A stage counts what came in, what went out and why the rest was dropped. Most stages have one
flow (rows in = rows out + dropped); some count more than one (ingest: records = messages +
quarantined + skipped; examples: messages in = targets + message drops, and candidates =
examples + capped candidates). Each flow is a :class:`Flow`; :meth:`StageResult.conservation`
checks that every flow balances. The Dagster `counts_conserved` check, the CLI summary and
the tests all read it from here.

:meth:`StageResult.summary` is the stage's entry in the JSON build summary: the same flat
keys as before this type existed (``rows_in``, ``rows_out``, ``dropped_by_reason``, then
the stage's own figures, ``engine``, ``seconds``), so scheduled jobs that read the JSON
keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from pipelines.core.checks import CheckResult


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

    def laws(self) -> tuple[Flow, ...]:
        return self.flows or (Flow("rows", self.rows_in, self.rows_out, self.dropped_by_reason),)

    def conservation(self) -> CheckResult:
        laws = self.laws()
        bad = [f for f in laws if f.off_by]
        return CheckResult(f"{self.stage}_counts", not bad, sum(abs(f.off_by) for f in bad),
                           "; ".join(f.describe() for f in laws), [f.name for f in bad])

    def with_run(self, engine: str | None = None, seconds: float | None = None) -> "StageResult":
        return replace(self, engine=self.engine if engine is None else engine,
                       seconds=self.seconds if seconds is None else seconds)

    def summary(self) -> dict:
        """The JSON build summary entry (flat, as before: see the module docstring)."""
        out: dict[str, Any] = {"rows_in": self.rows_in, "rows_out": self.rows_out,
                               "dropped_by_reason": dict(sorted(self.dropped_by_reason.items()))}
        out.update(self.figures)
        if self.engine:
            out["engine"] = self.engine
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    @property
    def dropped(self) -> int:
        return sum(int(v) for v in self.dropped_by_reason.values())
