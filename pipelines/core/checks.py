"""The result type of a data check. Stages provide check functions; Dagster asset checks,
the CLI and the tests all call them, so a check is written once."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    failed_rows: int
    description: str  # what was checked and, on failure, what failed
    samples: list = field(default_factory=list)  # up to ~10 offending keys or rows, JSON-able

    def as_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "failed_rows": self.failed_rows,
                "description": self.description, "samples": self.samples[:10]}
