"""Writes docs/configuration.md from the section models (`python -m pipelines.core.config_docs`).

Each section's keys, types, defaults, allowed ranges and meanings come from its model in
pipelines/core/settings.py (``Field(ge=…, description=…)``). A test fails when the committed
page differs, so the docs cannot drift from the models.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

from pipelines.core.config import SOURCE_NAME
from pipelines.core.settings import SECTIONS, Section

HEADER = f"""# The corpus configuration file

Generated from the section models in `pipelines/core/settings.py` by
`python -m pipelines.core.config_docs`; do not edit by hand. One TOML file drives
`socialcorpus build` and the Dagster assets.

```toml
out = "out"                        # where the tables go: a path (relative to this file) or fsspec URL
engine = "polars"                  # "polars" (one machine) or "spark" (see [spark])

[[sources]]                        # one entry per dump source
format = "reddit"                  # reddit, stackexchange, discourse, diplomacy, discord, slack, telegram, irc
paths = ["dumps/reddit/*.zst"]     # globs, folders or fsspec URLs, relative to this file
# name = "reddit"                  # optional slug; defaults to the format (format-2, … when repeated)

[histories]                        # every other section below is optional; defaults as listed
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

Types are checked strictly: `n = "5"` or `n = true` is an error (an integer where a number
is expected is fine), and so is an unknown key; the error names the file, the section and
the key. Without editing the file, a setting can be changed for one build with
`socialcorpus build --set SECTION.KEY=VALUE` (repeatable, e.g. `--set histories.n=3`; the
value is TOML, and a text key takes unquoted text), and in Dagster through the `corpus`
resource's per-section overrides (e.g. `histories: {{n: 3}}`; every section whose settings
change the build's content, secrets excepted).

"""


def type_name(annotation) -> str:
    """A field's type as the docs show it (`int`, `str | None`, `tuple[str, ...]`)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def allowed(field) -> str:
    """The field's constraints (``Field(ge=…, lt=…, min_length=…)``, pydantic's metadata) as text."""
    out = []
    for m in field.metadata:
        out += [f"{sign} {getattr(m, attr)}" for attr, sign in _BOUNDS if getattr(m, attr, None) is not None]
        if getattr(m, "min_length", None):
            out.append(f"at least {m.min_length} character{'s' if m.min_length != 1 else ''}")
    return ", ".join(out)


def section_doc(name: str, model: type[Section]) -> list[str]:
    doc = (inspect.getdoc(model) or "").split("\n\n")[0]
    out = [f"## [{name}]", "", doc, ""]
    if model.ALIASES:
        old = ", ".join(f"`[{a}]`" for a in model.ALIASES)
        out += [f"Old name: {old}, still read with a warning in the log; setting both it and `[{name}]` is an "
                "error.", ""]
    out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key, f in model.model_fields.items():
        default = f.get_default(call_default_factory=True)
        kind = type_name(f.annotation).replace("|", "\\|")  # a bare | would end the table cell
        out.append(f"| `{key}` | `{kind}` | `{default!r}` | {allowed(f)} | "
                   f"{(f.description or '').replace('|', '/')} |")
    out.append("")
    return out


def render() -> str:
    out = [HEADER]
    for name, model in SECTIONS.items():
        out += section_doc(name, model)
    return "\n".join(out) + "\n"


def main() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
