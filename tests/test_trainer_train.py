"""Training and evaluation on the demo shards: the loss falls, a resumed run is the same run,
the evaluation prints the ablation table, the CLI drives both."""

import json

import pytest
import torch

from pipelines.cli import main as socialcorpus
from pipelines.stages.shards import write_build_record
from trainer import config as cfgmod
from trainer.evaluate import CONDITIONS, evaluate, label_groups, role_swap_table
from trainer.train import train
from trainer_shards import shards_dir

TINY = cfgmod.replace(cfgmod.PRESETS["tiny"], block_size=96, history_size=64, batch_size=8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the CI box has 2 cores shared with other work: one thread avoids oversubscription stalls
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    return shards_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(manifests, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cfg = cfgmod.replace(TINY, max_steps=30, eval_every=15, eval_batches=2)
    return run, train(cfg, manifests["train"], str(run), val_manifest=manifests["validation"], device="cpu",
                      log=lambda s: None)


def test_loss_falls_over_a_few_dozen_steps(trained):
    run, r = trained
    losses = r["losses"]
    assert len(losses) == 30 and all(x == x for x in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert r["val"]["val_bpb"] > 0 and r["val"]["val_targets"] > 0
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 31)) and "val_bpb" in lines[14]


def test_stopped_and_resumed_run_reproduces_the_uninterrupted_losses(manifests, tmp_path):
    cfg = cfgmod.replace(TINY, max_steps=8, warmup_steps=2, grad_accum=2, forget_p=0.5, weight_decay=0.1)
    full = train(cfg, manifests["train"], str(tmp_path / "full"), device="cpu", log=lambda s: None)["losses"]
    first = train(cfg, manifests["train"], str(tmp_path / "cut"), device="cpu", stop_at=3, log=lambda s: None)["losses"]
    rest = train(cfg, manifests["train"], str(tmp_path / "cut"), device="cpu", resume=True, log=lambda s: None)["losses"]
    assert first + rest == full


def test_resume_refuses_shards_from_another_tokenizer(manifests, trained, tmp_path):
    run, _ = trained
    doc = json.loads(open(manifests["validation"]).read())
    folder = manifests["validation"].rsplit("/", 1)[0]
    doc["tokenizer_sha256"] = "f" * 64
    doc["shards"] = [dict(s, path=f"{folder}/{s['path']}") for s in doc["shards"]]
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "manifest.json").write_text(json.dumps(doc))
    # a complete build of its own, so the tokenizer check is what refuses it
    write_build_record(str(tmp_path), ["validation"], config_hash="other", tokenizer_sha256=doc["tokenizer_sha256"],
                       engine="polars")
    with pytest.raises(ValueError, match="tokenizer_sha256"):
        evaluate(str(run), str(tmp_path / "validation" / "manifest.json"), log=lambda s: None)


def test_evaluation_produces_the_ablation_table(manifests, trained, tmp_path, capsys):
    run, _ = trained
    out = tmp_path / "eval.json"
    r = evaluate(str(run), manifests["validation"], out=str(out), batch_size=8, max_batches=6, n_boot=50)
    assert set(r["conditions"]) == set(CONDITIONS) and r["examples"] > 0
    for name, c in r["conditions"].items():
        assert 0 < c["bpb"] < 20 and c["ci95"][0] <= c["bpb"] <= c["ci95"][1]
        assert c["bpb_by_role"]["self"] is not None
    assert r["conditions"]["none"]["gain_vs_none"] == 0
    assert json.loads(out.read_text())["conditions"]["both"]["bpb"] == r["conditions"]["both"]["bpb"]
    printed = capsys.readouterr().out
    assert all(name in printed for name in CONDITIONS) and "95% CI" in printed


def test_cli_trains_and_evaluates(manifests, tmp_path, capsys):
    run = tmp_path / "run"
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "tiny"\n[train]\nbatch_size = 4\n[model]\nblock_size = 64\nhistory_size = 32\n')
    assert socialcorpus(["train", "--data", manifests["train"], "--out", str(run), "--config", str(toml),
                         "--steps", "3", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 3 and len(summary["losses"]) == 3
    assert socialcorpus(["evaluate", "--run", str(run), "--data", manifests["validation"], "--device", "cpu",
                         "--max-batches", "2", "--out", str(tmp_path / "e.json")]) == 0
    assert set(json.loads((tmp_path / "e.json").read_text())["conditions"]) == set(CONDITIONS)
    assert socialcorpus(["train", "--data", str(tmp_path / "missing.json"), "--out", str(run)]) != 0


def test_swapped_control_exchanges_the_streams_role_tokens(manifests):
    from pipelines.stages.tokenizer import MENTION_ROLE_TOKENS, ROLE_TOKENS
    from trainer import data

    m = data.load_manifest(manifests["validation"])
    table = role_swap_table(m.special_tokens, m.vocab_size)
    ids = m.special_tokens
    for names in (ROLE_TOKENS, MENTION_ROLE_TOKENS):
        me, you, third = (ids[n] for n in names)
        assert table[me] == you and table[you] == me and table[third] == third
    moved = (table != torch.arange(m.vocab_size)).nonzero().flatten().tolist()
    assert sorted(moved) == sorted(ids[n] for n in (*ROLE_TOKENS[:2], *MENTION_ROLE_TOKENS[:2]))


def test_label_groups_split_examples_by_each_boolean_label():
    labels = ['{"sender_truthful": true, "receiver_truthful": null}', None,
              '{"sender_truthful": false, "receiver_truthful": true}']
    g = label_groups(labels)
    assert g["sender_truthful=true"].tolist() == [True, False, False]
    assert g["sender_truthful=false"].tolist() == [False, False, True]
    assert g["receiver_truthful=true"].tolist() == [False, False, True]
    assert not g["receiver_truthful=false"].any()


def test_evaluation_reports_the_ablation_per_deception_label(manifests, trained):
    run, _ = trained
    # Diplomacy examples (the labelled ones) are spread over the shuffled rows: 8 batches of 32 hold some
    r = evaluate(str(run), manifests["train"], batch_size=32, max_batches=8, n_boot=20, log=lambda s: None,
                 conditions=("both", "none"), per_example=True)
    assert "sender_truthful=true" in r["by_label"]
    for g in r["by_label"].values():
        assert set(g["conditions"]) == {"both", "none"} and g["examples"] > 0 and g["conditions"]["both"]["bpb"] > 0
    sender = sum(g["examples"] for k, g in r["by_label"].items() if k.startswith("sender_truthful="))
    assert sender == sum(t.startswith("diplomacy:") for t in r["per_example"]["target_message_id"]) > 0
