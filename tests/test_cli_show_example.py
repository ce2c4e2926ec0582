"""`socialcorpus show-example`: one shard row decoded back into the messages it was built from."""

import json
import shutil

import polars as pl
import pytest

from pipelines import cli

from pipelines.core import storage
from pipelines import show_example as SE
from pipelines.stages import tokenizer as T
from pipelines.core.config import load
from schemas import SHARD as S
from schemas import TIMELINE as TL


@pytest.fixture(scope="module")
def demo(demo_built):
    cfg = load(str(demo_built / "dumps" / "corpus.toml"))
    manifest = storage.join(cfg.table_url("shards", "validation"), "manifest.json")
    return cfg, manifest, T.load(cfg.table_url("tokenizer.json"))


def _rows(manifest, n):
    """The first ``n`` rows of the split as flat rows (the demo's shards have the reference layout)."""
    from pipelines.stages import shards as SH

    return SH.read_flat(manifest).slice(0, n).to_pylist()


def test_decoded_window_is_the_timeline_messages_in_order_with_the_target_last_and_masked(demo):
    cfg, manifest, tok = demo
    timeline = storage.read(cfg.table_url(TL.name)).select(
        TL.message_id, T.mark_mentions(pl.col(TL.text)).alias("marked"))
    text_of = dict(zip(timeline[TL.message_id].to_list(), timeline["marked"].to_list()))
    mention_roles = "|".join(t for t in T.MENTION_ROLE_TOKENS)
    for row in _rows(manifest, 30):
        ex = SE.assemble(row, "validation")
        msgs = SE.messages(ex, "window", tok)
        assert len(msgs) == len(row[S.window_msg_ids])
        assert [m.target for m in msgs] == [False] * (len(msgs) - 1) + [True]
        assert len(msgs[-1].masked) == row[S.n_target_tokens] and msgs[-1].mask_is_body
        assert msgs[-1].masked[-1] == T.END
        for m, mid, off in zip(msgs, row[S.window_msg_ids], row[S.window_msg_offsets]):
            assert tok.id_to_token(row[S.window_tokens][off + 1]) == f"<{m.role}>"
            # Role-relative mentions aside, the body is the anonymised text (no demo body is truncated).
            body = pl.Series([m.body]).str.replace_all(mention_roles, T.MENTION).item()
            assert body == text_of[mid], mid
        assert msgs[-1].who == row[S.self_id]


def test_own_and_interlocutor_streams_are_attributed_to_their_authors(demo):
    _, manifest, tok = demo
    seen = 0
    for row in _rows(manifest, 50):
        ex = SE.assemble(row)
        for stream, author in (("own", row[S.self_id]), ("other", row[S.other_id])):
            msgs = SE.messages(ex, stream, tok)
            assert len(msgs) == len(row[f"{stream}_msg_times"])
            assert all(m.who == author for m in msgs if m.role in ("self", "other"))
            seen += len(msgs)
    assert seen > 0


def test_cli_prints_the_chosen_row_by_index_and_by_example_id(demo, capsys):
    _, manifest, _ = demo
    row = _rows(manifest, 3)[2]
    assert cli.main(["show-example", "--data", manifest, "--index", "2"]) == 0
    by_index = capsys.readouterr().out
    assert by_index.startswith(f"example {row[S.example_id]}  (split validation)")
    assert "== conversation window" in by_index and "== own stream" in by_index
    assert "== interlocutor stream" in by_index and "loss mask = 1 on these" in by_index
    assert cli.main(["show-example", "--data", manifest, "--example-id", row[S.example_id]]) == 0
    assert capsys.readouterr().out == by_index


def test_cli_default_pick_shows_context_in_all_three_streams(demo, capsys):
    _, manifest, _ = demo
    assert cli.main(["show-example", "--data", manifest]) == 0
    out = capsys.readouterr().out
    counts = [int(line.rsplit(": ", 1)[1].split()[0]) for line in out.splitlines() if line.startswith("== ")]
    assert counts[0] >= 3 and counts[1] >= 1 and counts[2] >= 1


def test_index_out_of_range_names_the_split_size(demo, capsys):
    _, manifest, _ = demo
    rows = json.loads(open(manifest).read())["rows"]
    assert cli.main(["show-example", "--data", manifest, "--index", str(rows)]) == 2
    assert f"has {rows} rows (0..{rows - 1})" in capsys.readouterr().err


def test_a_tokenizer_other_than_the_shards_one_is_refused(demo, tmp_path, capsys):
    cfg, manifest, _ = demo
    other = tmp_path / "tokenizer.json"
    shutil.copy(cfg.table_url("tokenizer.json"), other)
    other.write_text(other.read_text() + "\n")
    assert cli.main(["show-example", "--data", manifest, "--tokenizer", str(other)]) == 2
    assert "is not the tokenizer these shards were built with" in capsys.readouterr().err


def test_token_shards_metadata_carries_a_rendered_validation_example(demo):
    from dagster_project.results import shard_example

    cfg, manifest, _ = demo
    md = shard_example(cfg)["example"].value
    assert "(validation split)" in md and "```text\nexample " in md and "loss mask = 1 on these" in md


def test_an_empty_split_says_so_and_names_the_way_out(tmp_path, capsys):
    split = tmp_path / "out" / "shards" / "test"
    split.mkdir(parents=True)
    (split / "manifest.json").write_text(json.dumps({"split": "test", "rows": 0, "shards": []}))
    assert cli.main(["show-example", "--data", str(split / "manifest.json")]) == 2
    err = capsys.readouterr().err
    assert "the test split has no rows" in err and "another split's manifest.json" in err


def test_the_first_hour_page_shows_the_current_demo_example(demo, capsys):
    from pathlib import Path

    _, manifest, _ = demo
    assert cli.main(["show-example", "--data", manifest, "--width", "88"]) == 0
    shown = capsys.readouterr().out.rstrip("\n")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "first-hour.md").read_text()
    assert f"```text\n{shown}\n```" in doc, (
        "docs/first-hour.md section 3 no longer shows what `socialcorpus show-example --data "
        "demo/dumps/out/shards/validation/manifest.json --width 88` prints on the demo corpus; paste the new output")
    for img in ("ui-asset-graph", "ui-asset-metadata", "ui-asset-plot", "ui-asset-checks", "ui-example"):
        assert f"(img/{img}.png)" in doc and (Path(__file__).resolve().parent.parent / "docs" / "img" /
                                               f"{img}.png").exists(), img
