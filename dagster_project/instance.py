"""The project's Dagster instance: one persistent home shared by `make demo` and `make ui`.

``make demo`` materialises into it and ``make ui`` (``dagster dev``) serves it, so the UI
opened after the demo shows every asset materialised, its metadata, plots and checks, and
the demo's runs in the run list. The home is ``.dagster_home/`` in the project
(git-ignored) unless a caller names another.

The ``dagster.yaml`` written here sets the instance options that suit a local product:
``telemetry: enabled: false`` (nothing is sent anywhere) and ``nux: enabled: false`` (no
"Join the community" dialog over the first page; Dagster 1.13's instance schema,
``dagster._core.instance.config``, has both keys).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".dagster_home"

# The first line marks a file this module wrote, so it may be rewritten; a user's own file is left alone.
MARKER = "# written by dagster_project.instance"
DAGSTER_YAML = f"""{MARKER}: the instance settings for a local socialcorpus.
# Edit freely: once this first line is gone the file is never rewritten.
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_home(home: str | os.PathLike | None = None) -> Path:
    """Create the Dagster home ``home`` (default :data:`HOME`) with our ``dagster.yaml``; return it.

    An existing ``dagster.yaml`` without :data:`MARKER` on its first line is the user's and is kept.
    """
    path = Path(home) if home is not None else HOME
    path.mkdir(parents=True, exist_ok=True)
    yaml = path / "dagster.yaml"
    if not yaml.exists() or yaml.read_text().startswith(MARKER):
        yaml.write_text(DAGSTER_YAML)
    return path


def open_instance(home: str | os.PathLike | None = None) -> DagsterInstance:
    """The persistent instance at ``home`` (created first); use it as a context manager."""
    return DagsterInstance.from_config(str(ensure_home(home)))
