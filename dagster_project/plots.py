"""The plots shown on asset pages: computed from the stage's output table, rendered as PNG markdown."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display; the UI gets PNG bytes
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from dagster_project.metadata import png_markdown  # noqa: E402
from pipelines.core import storage  # noqa: E402
from pipelines.core.config import CorpusConfig  # noqa: E402
from schemas import EXAMPLES, HISTORIES, TIMELINE  # noqa: E402


def messages_per_day(config: CorpusConfig) -> dict:
    """Messages per day per platform on the wall-clock timeline (ordinal sources have no days)."""
    per_day = (storage.scan(config.table_url(TIMELINE.name))
               .filter(pl.col(TIMELINE.created_at).is_not_null())
               .group_by(pl.col(TIMELINE.created_at).dt.date().alias("day"), TIMELINE.platform)
               .agg(pl.len().alias("n")).sort("day", TIMELINE.platform).collect())
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for (platform,), g in per_day.group_by(TIMELINE.platform, maintain_order=True):
        ax.plot(g["day"].to_list(), g["n"].to_list(), marker=".", linestyle="none", label=platform)
    ax.set_yscale("log")
    ax.set_ylabel("messages per day")
    ax.set_title("Messages per day per platform (wall-clock timeline)")
    if per_day.height:
        ax.legend(fontsize=7, ncol=4)
    fig.autofmt_xdate()
    return {"plot_messages_per_day": png_markdown(fig, "Messages per day per platform")}


def history_lengths(config: CorpusConfig) -> dict:
    """Distribution of reading-history and own-history lengths."""
    lens = (storage.scan(config.table_url(HISTORIES.name))
            .select(pl.col(HISTORIES.read_seqs).list.len().alias("read"),
                    pl.col(HISTORIES.own_seqs).list.len().alias("own")).collect())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = int(max(lens["read"].max() or 0, lens["own"].max() or 0))
    bins = [b - 0.5 for b in range(top + 2)]
    ax.hist([lens["read"].to_list(), lens["own"].to_list()], bins=bins, label=["read (N)", "own (K)"])
    ax.set_xlabel("messages referenced")
    ax.set_ylabel("rows")
    ax.set_title("Reading-history lengths")
    ax.legend()
    return {"plot_history_lengths": png_markdown(fig, "Reading-history lengths")}


def example_gaps(config: CorpusConfig) -> dict:
    """Distribution of the time gap before each target message (wall-clock examples)."""
    gaps = (storage.scan(config.table_url(EXAMPLES.name))
            .select(pl.col(EXAMPLES.window_gaps).list.last().alias("gap"), EXAMPLES.split)
            .filter(pl.col("gap").is_not_null() & (pl.col("gap") > 0)).collect())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if gaps.height:
        ax.hist(gaps["gap"].log10().to_list(), bins=40)
    ax.set_xlabel("log10 seconds before the target message")
    ax.set_ylabel("examples")
    ax.set_title("Time gap before target messages")
    return {"plot_target_gaps": png_markdown(fig, "Time gap before target messages")}
