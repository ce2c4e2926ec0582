"""The registry of dump formats: one module per format, each exposing ``READER``."""

from __future__ import annotations

import importlib

from pipelines.sources.base import Outcome, Quarantined, Reader, Skipped, SourceError

FORMATS = ("reddit", "stackexchange", "discourse", "diplomacy", "discord", "slack", "telegram", "irc")


def get_reader(format: str) -> Reader:
    """The reader for ``format``; an unknown name is an error that lists the known ones."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"pipelines.sources.{format}").READER


__all__ = ["FORMATS", "get_reader", "Reader", "Outcome", "Quarantined", "Skipped", "SourceError"]
