"""Writes docs/configuration.md from the stage config dataclasses (`python -m pipelines.core.config_docs`).

Each section's fields, types and defaults come from its dataclass; a field's description
comes from a `name: text` line in the class docstring (or a `#:` comment is not needed).
A test fails when the committed page differs, so defaults cannot drift from the docs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

from pipelines.core.config import SECTIONS, SOURCE_NAME

HEADER = f"""# The corpus configuration file

Generated from the stage config dataclasses by `python -m pipelines.core.config_docs`; do not
edit by hand. One TOML file drives `socialcorpus build` and the Dagster assets.

```toml
out = "out"                        # where the tables go: a path (relative to this file) or fsspec URL
engine = "polars"                  # "polars" (one machine) or "spark" (see [spark])

[[sources]]                        # one entry per dump source
format = "reddit"                  # reddit, stackexchange, discourse, diplomacy, discord, slack, telegram, irc
paths = ["dumps/reddit/*.zst"]     # globs, folders or fsspec URLs, relative to this file
# name = "reddit"                  # optional slug; defaults to the format (format-2, … when repeated)

[history]                          # every other section below is optional; defaults as listed
n = 5
```

The pseudonym secret is never in this file: it comes from the environment variable
`SOCIALCORPUS_SECRET` (or the Dagster `pseudonym_secret` resource). Only the demo
configuration sets `[anonymize] demo_secret`, a fixed, public, demo-only value.

A source's `name` is a folder name: the source's tables are `messages_raw/<name>/` and
`quarantine/<name>/` under `out`, and a rerun replaces exactly those folders. So it must be
a slug matching `{SOURCE_NAME.pattern}` (lower-case letters, digits, `_` and `-`, starting
with a letter or digit) and unique; anything else (`"../x"`, `"a/b"`, `"Reddit"`, `""`) is
refused with an error naming the file and the name, before anything is written.

"""


def _field_docs(cls) -> dict[str, str]:
    docs = {}
    for line in (inspect.getdoc(cls) or "").splitlines():
        m = re.match(r"\s*(\w+):\s+(.*)", line)
        if m:
            docs[m.group(1)] = m.group(2)
    return docs


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return repr(f.default_factory())  # type: ignore[misc]
    return "(required)"


def render() -> str:
    out = [HEADER]
    for section, target in SECTIONS.items():
        mod, name = target.split(":")
        try:
            cls = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0]
        out.append(f"## [{section}]\n\n{doc}\n\n| key | type | default | meaning |\n|---|---|---|---|")
        fdocs = _field_docs(cls)
        for f in dataclasses.fields(cls):
            t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            out.append(f"| `{f.name}` | `{t}` | `{_default(f)}` | {fdocs.get(f.name, '')} |")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
