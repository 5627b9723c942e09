"""The validation loop on CPU: held-out loss every eval.every steps in metrics.jsonl, per source and per stage,
held-out rows never in a training batch (checked against the token rows the model was trained on), eval.path,
the max_batches bound and the config checks, on shards packed from real fixture text."""
import json
import math
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import xxhash

from conftest import tiny_train_config
from dataflow.trainset.demo import build
from trainer.config import load_config
from trainer.data import heldout_rows, read_mix
from trainer.step import lm_loss_sum
from trainer.train import train
from trainer.validate import Validator

ROOT = Path(__file__).resolve().parent.parent
SEED = 1234  # conf/train/tiny.yaml data.seed: the held-out split's hash seed


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory):
    return build(corpus_dir / "docs.jsonl", tmp_path_factory.mktemp("mix"), seq_len=128, vocab_size=4000,
                 rows_per_stage=32, rows_per_shard=16)


def config(mix, out: Path, *overrides):
    return tiny_train_config(mix, out, "optim.warmup_steps=2", "micro_batch_size=4", "checkpoint.at_exit=false",
                             "precision=fp32", *overrides)


def stage_rows(stage_dir: Path) -> list[tuple[str, int, tuple, str]]:
    """(shard path relative to the stage dir, row in shard, token tuple, source) of every row, read from the
    Parquet files."""
    m = json.loads((stage_dir / "manifest.json").read_text())
    out = []
    for s in m["shards"]:
        t = pq.read_table(stage_dir / s["path"], columns=["input_ids", "source"])
        out.extend((os.path.relpath(stage_dir / s["path"], stage_dir), i, tuple(r), src)
                   for i, (r, src) in enumerate(zip(t["input_ids"].to_pylist(), t["source"].to_pylist())))
    return out


def held_out_by_hash(stage_dir: Path, fraction: float) -> dict[tuple, str]:
    """The split the docs promise, computed here: xxh64(seed; UTF-8 "<shard>:<row>") / 2^64 < fraction.
    Token tuple -> the row's source."""
    cut = int(fraction * 2 ** 64)
    return {ids: src for rel, i, ids, src in stage_rows(stage_dir)
            if xxhash.xxh64_intdigest(f"{rel}:{i}".encode(), seed=SEED) < cut}


def test_eval_every_2_steps_reports_per_stage_and_type_and_never_trains_on_held_out_rows(mix, tmp_path):
    trained: list[tuple] = []

    def recording(model, batch, device):  # the training loss (eval uses its own): note every row trained on
        trained.extend(tuple(r) for r in batch["input_ids"].tolist())
        return lm_loss_sum(model, batch, device)

    cfg = config(mix, tmp_path, "data.stages=[1,2]", "data.steps_per_stage=2", "max_steps=4", "eval.every=2",
                 "eval.fraction=0.25", "eval.max_batches=100")
    summary, engine = train(cfg, loss_fn=recording)
    assert summary["steps"] == 4 and engine.training
    recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    evals = [r for r in recs if "eval_loss" in r]
    assert [(r["step"], r["stage"]) for r in evals] == [(2, 1), (4, 2)]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]

    held = {n: held_out_by_hash(mix / f"stage{n}", 0.25) for n in (1, 2)}
    assert all(held.values()), "the split must hold rows out of every stage for the test to mean anything"
    for r in evals:
        assert math.isfinite(r["eval_loss"]) and 0 < r["eval_loss"] < 20
        assert set(r["eval_loss_by_stage"]) == {"1", "2"}   # every stage's held-out rows, whatever stage trains
        # one loss per source the held-out rows name (their `source` column, read here)
        assert set(r["eval_loss_by_type"]) == set(held[1].values()) | set(held[2].values())
        assert all(math.isfinite(v) for v in r["eval_loss_by_type"].values())
        assert r["eval_rows"] == len(held[1]) + len(held[2])   # max_batches 100 bounds nothing here

    assert len(trained) == 4 * 4
    assert not set(trained) & (set(held[1]) | set(held[2]))
    # the recording saw real training rows: each is a row of stage 1 or 2 that was not held out
    all_rows = {row[2] for n in (1, 2) for row in stage_rows(mix / f"stage{n}")}
    assert set(trained) <= all_rows


def test_eval_path_evaluates_another_stage_dir_bounded_by_max_batches(mix, tmp_path):
    cfg = config(mix, tmp_path, "data.stages=[1]", "max_steps=2", "eval.every=1", f"eval.path={mix / 'stage3'}",
                 "eval.max_batches=3")
    train(cfg)
    evals = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    evals = [r for r in evals if "eval_loss" in r]
    assert [r["step"] for r in evals] == [1, 2]
    assert all(set(r["eval_loss_by_stage"]) == {"3"} and r["eval_rows"] == 3 * 4 for r in evals)
    assert evals[0]["eval_loss"] != evals[1]["eval_loss"]   # the model changed between the two evaluations


def test_validator_takes_sources_round_robin_within_max_batches(mix):
    st = read_mix(mix)[1]   # stage 2: champ examples and prose
    rows = heldout_rows(st, 0.5, SEED)
    v = Validator([st], [rows], micro_batch_size=2, max_batches=2)
    assert len(v.batches) == 2 and len({b.source for b in v.batches}) == 2
    assert all(set(b.rows) <= set(rows.tolist()) for b in v.batches)
    by_hash = held_out_by_hash(mix / "stage2", 0.5)
    tokens = stage_rows(mix / "stage2")
    assert {tokens[i][2] for i in rows.tolist()} == set(by_hash)


@pytest.mark.parametrize("bad, message", [
    (["eval.every=2"], "needs rows to evaluate"),
    (["eval.fraction=1.0"], "0 <= fraction < 1"),
    (["eval.every=-1"], "0 = off"),
    (["eval.every=2", "eval.fraction=0.1", "eval.path=x"], "alternatives"),
    (["eval.max_batches=0"], "at least 1"),
])
def test_eval_config_is_checked(bad, message):
    with pytest.raises(ValueError, match=message):
        load_config(ROOT / "conf/train/tiny.yaml", bad)


def test_eval_records_reach_tensorboard_and_the_loss_plot(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.metrics import MetricsLog, plot_loss

    log = MetricsLog(tmp_path, tensorboard=True, run_name="eval")
    log.log({"step": 1, "stage": 1, "loss": 7.5, "skipped": False})
    log.log_eval({"step": 1, "stage": 1, "eval_loss": 7.25, "eval_loss_by_type": {"web": 7.0, "code": None},
                  "eval_loss_by_stage": {"1": 7.25}})
    log.close()
    ea = EventAccumulator(str(tmp_path / "tensorboard" / "eval"))
    ea.Reload()
    assert {"eval/loss", "eval/loss_by_type/web", "eval/loss_by_stage/1"} <= set(ea.Tags()["scalars"])
    assert "eval/loss_by_type/code" not in ea.Tags()["scalars"]   # a null loss is not drawn as a number
    assert [e.value for e in ea.Scalars("eval/loss")] == [7.25]
    assert plot_loss(tmp_path / "metrics.jsonl", tmp_path / "loss.png").stat().st_size > 0
