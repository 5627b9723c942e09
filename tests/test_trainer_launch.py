"""The trainer's documented commands, run as documented (#26.7): the DeepSpeed launcher line of docs/trainer.md
trains on this CPU machine, every place that shows a launch line gives DeepSpeed's `--module` (its launcher
rejects python's `-m`), and each run writes its own TensorBoard folder, so reruns never draw into one curve.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# what the tests add after the documented line: their own data and output folders, 2 steps, no plot
TAIL = ["--set", "max_steps=2", "--set", "metrics.progress_bar=false", "--set", "metrics.plot=false"]


def env() -> dict:
    """The child's environment: this one, without the rendezvous of a trainer an earlier test ran in this
    process (its MASTER_PORT stays bound for the session: a child inheriting it fails with EADDRINUSE)."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("MASTER_PORT", "MASTER_ADDR", "RANK", "LOCAL_RANK", "WORLD_SIZE")}
    e["PYTHONUNBUFFERED"] = "1"
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e.get('PATH', '')}"   # the deepspeed launcher of the venv
    return e


@pytest.fixture(scope="module")
def mix(corpus_dir, tmp_path_factory) -> Path:
    """Small training shards of the fixture corpus (256-token rows), as `make train` builds when no mix exists."""
    out = tmp_path_factory.mktemp("launch") / "mix"
    r = subprocess.run([sys.executable, "-m", "dataflow.trainset.demo", "--corpus", str(corpus_dir / "docs.jsonl"),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (out / "manifest.json").exists(), r.stderr[-2000:]
    return out


def launch_lines(text: str) -> list[str]:
    """The DeepSpeed launch lines of a text (a line whose command starts with `deepspeed`), comment marks off."""
    out = []
    for line in text.splitlines():
        cmd = re.sub(r"^\s*#\s*", "", line)
        cmd = re.sub(r"^(DS_ACCELERATOR=\w+\s+)", "", cmd)
        if cmd.startswith("deepspeed ") and "trainer.train" in line:
            out.append(cmd)
    return out


def test_every_launch_line_uses_module():
    texts = {"docs/trainer.md": (ROOT / "docs/trainer.md").read_text(encoding="utf-8")}
    for p in sorted((ROOT / "conf/train").glob("*.yaml")):
        texts[str(p.relative_to(ROOT))] = p.read_text(encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "trainer.train", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    texts["trainer.train --help"] = r.stdout
    seen = 0
    for where, text in texts.items():
        for line in launch_lines(text):
            seen += 1
            argv = shlex.split(line.rstrip("\\"))
            assert "-m" not in argv and "--module" in argv, f"{where}: {line}"
    # docs (5), the two GPU configurations' headers and --help: the count is ours, from the files above
    assert seen >= 4


def test_documented_launch_line_trains_on_cpu(mix, tmp_path):
    """Exactly the documented one-process launcher line, plus this test's data and output folders: 2 steps."""
    [line] = [l for l in launch_lines((ROOT / "docs/trainer.md").read_text(encoding="utf-8"))
              if l.startswith("deepspeed --num_gpus 1 ")]
    argv = shlex.split(line.split("#")[0])
    assert argv[:4] == ["deepspeed", "--num_gpus", "1", "--module"]
    out = tmp_path / "run"
    argv += ["--set", f"data.root={mix}", "--set", f"checkpoint.dir={out / 'ckpt'}", "--set", f"metrics.dir={out}",
             *TAIL]
    r = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert [s["step"] for s in steps] == [1, 2]
    assert all(s["loss"] == s["loss"] and s["loss"] > 0 for s in steps)   # finite, not NaN


def test_each_run_has_its_own_tensorboard_folder(mix, tmp_path):
    out = tmp_path / "tb-runs"
    cmd = [sys.executable, "-m", "trainer.train", "--config", "conf/train/tiny.yaml", "--set", f"data.root={mix}",
           "--set", f"checkpoint.dir={out / 'ckpt'}", "--set", f"metrics.dir={out}", "--set", "metrics.tensorboard=true",
           *TAIL]
    for extra in ([], ["--run-name", "second"], ["--set", "metrics.run_name=third"]):
        r = subprocess.run(cmd + extra, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = sorted(p for p in (out / "tensorboard").iterdir())
    assert len(runs) == 3 and [r.name for r in runs[1:]] == ["second", "third"], runs
    assert re.fullmatch(r"\d{8}-\d{6}", runs[0].name), runs[0].name   # the default: the start time
    for run in runs:
        events = list(run.glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 0, run
    assert not list((out / "tensorboard").glob("events.out.tfevents.*"))   # nothing left at the top
