"""Nothing skipped or failing late (#11): a stage with no shards, a missing or damaged shard of a later stage,
a missing or truncated checkpoint each stop the trainer at start with a message naming the path."""
import json
import shutil
from pathlib import Path

import pytest

from trainer.checkpoint import CheckpointError
from conftest import tiny_train_config
from trainer.data import read_mix
from dataflow.trainset.demo import build
from trainer.hf import export_checkpoint
from trainer.train import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory):
    return build(corpus_dir / "docs.jsonl", tmp_path_factory.mktemp("mix"), seq_len=128, vocab_size=4000,
                 rows_per_stage=16, rows_per_shard=8)


def config(mix, out: Path, *overrides):
    return tiny_train_config(mix, out, "micro_batch_size=2", "data.steps_per_stage=2", *overrides)


def copy_mix(mix, tmp_path) -> Path:
    return Path(shutil.copytree(mix, tmp_path / "mix"))


def test_a_stage_without_shards_is_an_error_not_a_skip(mix, tmp_path):
    m = copy_mix(mix, tmp_path)
    manifest = m / "stage2" / "manifest.json"
    d = json.loads(manifest.read_text())
    d["shards"], d["rows"] = [], 0
    manifest.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=str(manifest)):
        read_mix(m)
    with pytest.raises(ValueError, match="stage 2 lists 0 shards"):
        train(config(m, tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # failed before the first step


def test_a_missing_shard_of_the_last_stage_fails_at_start(mix, tmp_path):
    m = copy_mix(mix, tmp_path)
    gone = m / "stage3" / "shards" / "part-00001.parquet"
    gone.unlink()
    with pytest.raises(ValueError) as e:
        train(config(m, tmp_path / "run"))
    assert f"stage 3: shard {gone} does not exist" in str(e.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stages 1 and 2 did not train first


def test_a_truncated_or_short_shard_fails_at_start_naming_it(mix, tmp_path):
    m = copy_mix(mix, tmp_path)
    cut = m / "stage3" / "shards" / "part-00000.parquet"
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    manifest = m / "stage2" / "manifest.json"
    d = json.loads(manifest.read_text())
    d["shards"][0]["rows"] += 1
    d["rows"] += 1
    manifest.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        train(config(m, tmp_path / "run"))
    msg = str(e.value)
    assert f"stage 3: shard {cut} is not readable Parquet" in msg
    assert f"stage 2: shard {m / 'stage2' / 'shards' / 'part-00000.parquet'} holds 8 rows, its manifest says 9" in msg


def test_a_truncated_or_missing_checkpoint_names_its_path(mix, tmp_path):
    run = tmp_path / "run"
    summary, _ = train(config(mix, run, "data.stages=[1]", "max_steps=2", "checkpoint.resume=false"))
    assert summary["steps"] == 2
    states = run / "ckpt" / "global_step2" / "mp_rank_00_model_states.pt"
    good = states.read_bytes()
    states.write_bytes(good[:len(good) // 3])
    with pytest.raises(CheckpointError, match=f"{states} is truncated"):
        train(config(mix, run, "data.stages=[1]", "max_steps=4", "checkpoint.resume=true"))
    with pytest.raises(CheckpointError, match=f"{states} is truncated"):
        export_checkpoint(run / "ckpt", tmp_path / "hf")
    shutil.rmtree(run / "ckpt" / "global_step2")
    with pytest.raises(CheckpointError, match=f"checkpoint {run / 'ckpt' / 'global_step2'} does not exist"):
        train(config(mix, run, "data.stages=[1]", "max_steps=4", "checkpoint.resume=true"))
