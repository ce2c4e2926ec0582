"""Writes docs/schema.md from the declarations in schemas/ (`python -m schemas.docs`).

A test fails when the committed file differs from what this generates, so the docs cannot
drift from the schemas.
"""

from pathlib import Path

from schemas import ALL_TABLES

HEADER = """# Table schemas

Generated from `schemas/` by `python -m schemas.docs`; do not edit by hand.
Every table is a Parquet dataset directory `OUT/<table>/` (Arrow types below; the column
docs are also stored as Arrow field metadata). Raw tier: `messages_raw`, `quarantine`,
`messages` hold raw author names and must stay access-controlled. Everything from
`messages_anon` on is anonymised: no raw handle, display name, e-mail, phone number,
platform user id (private chats' ids are keyed-hashed), file path or secret.

"""


def render() -> str:
    return HEADER + "\n".join(t.markdown() for t in ALL_TABLES)


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "schema.md"
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
