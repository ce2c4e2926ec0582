"""The shard loader: deterministic order, disjoint equal shares per rank, exact seek, integrity."""

import json
import shutil

import pytest
import torch

from schemas.shards import BUILD_RECORD
from trainer import data
from trainer_shards import shards_dir


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return shards_dir(tmp_path_factory)


def ids_of(stream):
    out = []
    for b in stream:
        out.append(tuple(b["idx"][:, :16].flatten().tolist()) + tuple(b["self_id"]))
    return out


def all_rows(stream) -> list:
    return [row for b in stream for row in zip(b["self_id"], map(tuple, b["idx"].tolist()))]


def test_manifest_matches_the_shard_contract(manifests):
    m = data.load_manifest(manifests["train"])
    assert m.rows > 0 and m.shards and m.pad_id == m.special_tokens["<pad>"]
    assert sum(sum(s.row_groups) for s in m.shards) == m.rows


def test_order_is_a_pure_function_of_seed_and_epoch(manifests):
    m = data.load_manifest(manifests["train"])
    a = ids_of(data.ShardStream(m, 8, seed=3, epoch=0, block_size=32, history_size=16))
    b = ids_of(data.ShardStream(m, 8, seed=3, epoch=0, block_size=32, history_size=16))
    c = ids_of(data.ShardStream(m, 8, seed=3, epoch=1, block_size=32, history_size=16))
    assert a == b and a != c


@pytest.mark.parametrize("workers", [1, 2])
def test_two_ranks_get_disjoint_data_and_equal_step_counts(manifests, workers):
    m = data.load_manifest(manifests["train"])
    per_rank = []
    for rank in range(2):
        stream = data.ShardStream(m, 16, seed=0, rank=rank, world_size=2, num_workers=workers,
                                  block_size=16, history_size=8)
        per_rank.append([b for b in data.make_loader(stream)])
        assert len(per_rank[-1]) == len(stream) > 0
    assert len(per_rank[0]) == len(per_rank[1])
    rows = [{(sid, tuple(r)) for b in bs for sid, r in zip(b["self_id"], b["idx"].tolist())} for bs in per_rank]
    n_rows = [sum(len(b["self_id"]) for b in bs) for bs in per_rank]
    assert n_rows[0] == n_rows[1] == len(per_rank[0]) * 16
    # disjoint up to exact duplicate rows (identical window and self id) present in the corpus itself
    everything = all_rows(data.ShardStream(m, 16, shuffle=False, block_size=16, history_size=8))
    assert len(rows[0] & rows[1]) <= len(everything) - len(set(everything))


def test_resume_from_a_consumed_batch_count_continues_the_same_sequence(manifests):
    m = data.load_manifest(manifests["train"])
    kw = dict(seed=5, num_workers=2, block_size=24, history_size=12)
    full = [b["idx"] for b in data.make_loader(data.ShardStream(m, 8, **kw))]
    for start in (1, 4):
        rest = [b["idx"] for b in data.make_loader(data.ShardStream(m, 8, start=start, **kw))]
        assert len(rest) == len(full) - start
        assert all(torch.equal(x, y) for x, y in zip(rest, full[start:]))


def test_collate_pads_and_masks_the_three_streams(manifests):
    m = data.load_manifest(manifests["train"])
    b = next(iter(data.ShardStream(m, 4, seed=0, block_size=64, history_size=32)))
    assert b["idx"].shape == b["targets"].shape == b["roles"].shape and b["idx"].shape[1] <= 64
    pad = b["roles"] < 0
    assert (b["idx"][pad] == m.pad_id).all() and (b["targets"][pad] == -1).all()
    assert ((b["targets"] >= 0).sum(1) == b["n_target"]).all() and (b["n_target"] > 0).all()
    for s in ("own", "other"):
        assert b[s].shape == b[f"{s}_seg"].shape and b[s].shape[1] <= 32
        assert (b[s][b[f"{s}_seg"] < 0] == m.pad_id).all()


def test_a_changed_shard_is_refused(manifests, tmp_path):
    src = data.load_manifest(manifests["validation"])
    folder = tmp_path / "validation"
    shutil.copytree(src.url.rsplit("/", 1)[0], folder)
    shutil.copy(src.url.rsplit("/", 2)[0] + "/" + BUILD_RECORD, tmp_path / BUILD_RECORD)
    shard = folder / json.loads((folder / "manifest.json").read_text())["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")  # one byte changed after the build
    with pytest.raises(ValueError, match="sha256"):
        next(iter(data.ShardStream(data.load_manifest(str(folder / "manifest.json")), 4, shuffle=False)))
    doc = json.loads((folder / "manifest.json").read_text())
    doc["schema_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="schema version"):
        data.load_manifest(str(folder / "manifest.json"))


def test_deception_labels_travel_from_pair_examples_to_the_batches(manifests):
    """Diplomacy's labels reach the shards (`target_labels`) and the collated batch unchanged."""
    from pipelines.core import storage
    from schemas import EXAMPLES as E

    out = manifests["train"].rsplit("/shards/", 1)[0]
    ex = storage.read(f"{out}/{E.name}").select(E.target_message_id, E.other_id, E.labels)
    want = {(t, o): lab for t, o, lab in ex.iter_rows()}
    labelled = 0
    for split in ("train", "validation", "test"):
        m = data.load_manifest(manifests[split])
        for b in data.ShardStream(m, 64, shuffle=False, block_size=8, history_size=4):
            for t, o, lab in zip(b["target_message_id"], b["other_id"], b["target_labels"]):
                assert lab == want[(t, o)], (t, o)
                labelled += lab is not None
                assert (lab is not None) == t.startswith("diplomacy:")
    assert labelled > 50
