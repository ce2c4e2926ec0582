"""Turning a stage's summary into the metadata the Dagster UI shows, and plots into markdown.

A stage's JSON summary (:meth:`pipelines.core.results.StageResult.summary`) becomes the
metadata: numbers become numeric metadata (plotted over time by the UI), ``rows_out`` also
becomes ``dagster/row_count``, dicts become JSON, and a few derived rates (dedup rate,
near-dup rate, quarantine rate) are added by dagster_project/results.py. Plots are matplotlib PNGs embedded in markdown as data URLs, the way
the Dagster UI renders images in metadata.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Mapping

from dagster import MetadataValue

from pipelines.core.results import StageResult

SECRET_WORDS = ("secret", "salt", "key_value")


def _value(v: Any):
    if isinstance(v, bool):
        return MetadataValue.bool(v)
    if isinstance(v, int):
        return MetadataValue.int(v)
    if isinstance(v, float):
        return MetadataValue.float(v) if math.isfinite(v) else MetadataValue.text(str(v))
    if isinstance(v, (dict, list, tuple)):
        return MetadataValue.json(v if isinstance(v, dict) else list(v))
    if v is None:
        return MetadataValue.text("")
    s = str(v)
    if "://" in s or s.startswith("/"):
        return MetadataValue.path(s)
    return MetadataValue.text(s)


def summary_metadata(result: StageResult, derived: Mapping[str, Any] | None = None) -> dict:
    """Metadata for one materialisation: every field of the result's summary (the JSON build
    summary's entry), ``dagster/row_count`` (rows out), derived rates.

    A string field whose name says it could carry a secret is left out, so a stage bug
    cannot put the pseudonym key into the UI.
    """
    md: dict[str, Any] = {}
    for k, v in result.summary().items():
        if isinstance(v, str) and any(w in k.lower() for w in SECRET_WORDS):
            continue
        md[k] = _value(v)
    md["dagster/row_count"] = MetadataValue.int(result.rows_out)
    for k, v in (derived or {}).items():
        md[k] = _value(v)
    return md


def rate(part: int | float | None, whole: int | float | None) -> float | None:
    if not whole or part is None:
        return None
    return round(float(part) / float(whole), 6)


def png_markdown(fig, title: str) -> MetadataValue:
    """A matplotlib figure as markdown with the PNG inline (renders in the asset's metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{data})")
