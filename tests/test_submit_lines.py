"""`--print-submit` prints a script that runs as printed (#26.3, #26.4, #26.5): in a fresh shell without the venv,
from another directory, it runs every stage through spark-submit; a failing stage stops it; the console shows no
Spark INFO line unless the lines were printed with --verbose; YARN and Kubernetes lines carry what those masters
need from the configuration, or --print-submit names the missing key; under `--py-files` the default
configuration is the zip's own.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.pipeline.submit import submit_lines
from tools.cluster.dist import build

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["preprocess", "evaluate"]
# a Spark/log4j console line at INFO: "25/01/01 12:00:00 INFO SparkContext: ..." or log4j2's "INFO Utils: ..."
INFO = re.compile(r"(^|\s)INFO\s+\S+:")


@pytest.fixture(scope="module")
def zipped(tmp_path_factory) -> Path:
    """`make dist`'s zip, built into a folder of the test's own (dist/ is shared)."""
    return build(tmp_path_factory.mktemp("dist") / "ziya2_dataflow.zip")


@pytest.fixture(scope="module")
def small_input(corpus_dir, models_dir, tmp_path_factory) -> Path:
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    p = tmp_path_factory.mktemp("submit_in") / "docs.jsonl"
    p.write_text("\n".join(lines[::24]) + "\n", encoding="utf-8")
    return p


def local_sets(zipped: Path, stages: list[str]) -> list[str]:
    return [f"pipeline.stages=[{', '.join(stages)}]", "pipeline.cluster.master=local[2]",
            "pipeline.cluster.deploy_mode=client", f"pipeline.cluster.py_files={zipped}", "evaluate.sample_share=0.1",
            "spark.conf.spark.sql.shuffle.partitions=2"]


def print_script(inp: Path, out: Path, sets: list[str], *extra: str) -> str:
    argv = [sys.executable, "-m", "jobs.pipeline", "--input", str(inp), "--output", str(out), "--print-submit",
            *[x for s in sets for x in ("--set", s)], *extra]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def run_fresh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """`env -i PATH=/usr/bin:/bin HOME=$HOME bash submit.sh` in another directory: no venv, no SPARK_HOME."""
    (cwd / "submit.sh").write_text(script)
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", f"HOME={os.environ.get('HOME', '/tmp')}", "bash",
                           "submit.sh"], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_printed_script_runs_in_a_fresh_shell(zipped, small_input, tmp_path):
    out = tmp_path / "run"
    script = print_script(small_input, out, local_sets(zipped, STAGES))
    lines = script.splitlines()
    assert lines[0] == "set -euo pipefail"
    subs = [shlex.split(l) for l in lines if not l.startswith("#") and "spark-submit" in l]
    assert len(subs) == len(STAGES)
    for argv in subs:
        assert os.path.isabs(argv[0]) and argv[0].endswith("/bin/spark-submit") and os.access(argv[0], os.X_OK)
        job = next(i for i, a in enumerate(argv) if a.endswith("jobs/stage.py"))
        paths = [argv[argv.index("--py-files") + 1], argv[job], argv[argv.index("--input") + 1],
                 argv[argv.index("--output") + 1], argv[argv.index("--conf", job) + 1]]
        assert all(os.path.isabs(p) for p in paths), paths
        assert any(a.startswith("spark.driver.extraJavaOptions=") and "log4j2.configurationFile=file:" in a
                   for a in argv)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_fresh(script, elsewhere)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-4000:]
    for d in ("10-preprocess", "50-evaluate"):
        assert (out / d / "_SUCCESS").exists(), d
    # the console: the stages' own lines, no Spark INFO line (log4j2.properties reached the driver JVM)
    info = [l for l in (r.stdout + r.stderr).splitlines() if INFO.search(l)]
    assert info == [], info[:5]
    assert "[preprocess] in=" in r.stdout and "[evaluate] in=" in r.stdout


def test_failing_first_stage_stops_the_script(zipped, tmp_path):
    out = tmp_path / "run"
    script = print_script(tmp_path / "no-such-input.jsonl", out, local_sets(zipped, STAGES))
    r = run_fresh(script, tmp_path)
    assert r.returncode != 0
    assert "no-such-input.jsonl does not exist" in r.stdout + r.stderr
    assert not (out / "10-preprocess").exists() and not (out / "50-evaluate").exists()


def test_verbose_lines_bring_spark_info_back(zipped, small_input, tmp_path):
    out = tmp_path / "run"
    script = print_script(small_input, out, local_sets(zipped, ["preprocess"]), "--verbose")
    assert "log4j2.configurationFile" not in script and " --verbose" in script
    r = run_fresh(script, tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (out / "10-preprocess" / "_SUCCESS").exists()
    info = [l for l in r.stderr.splitlines() if INFO.search(l)]
    assert len(info) > 0, r.stderr[-2000:]


def test_yarn_lines_need_the_executors_python():
    with pytest.raises(ValueError, match=r"pipeline\.cluster\.python") as e:
        submit_lines(str(ROOT / "conf/pipeline.yaml"), ["pipeline.cluster.master=yarn"], ["s3a://b/in"], "s3a://b/run")
    assert "\n" not in str(e.value)
    lines = submit_lines(str(ROOT / "conf/pipeline.yaml"),
                         ["pipeline.cluster.master=yarn", "pipeline.cluster.python=./runtime/bin/python",
                          "pipeline.cluster.archives=[dist/runtime.tar.gz#runtime]"], ["s3a://b/in"], "s3a://b/run")
    subs = [shlex.split(l) for l in lines if "spark-submit" in l.split(" ")[0]]
    assert subs
    for argv in subs:
        assert "spark.pyspark.python=./runtime/bin/python" in argv
        assert argv[argv.index("--archives") + 1].startswith(f"{ROOT}/dist/runtime.tar.gz#runtime")
        assert not any(sys.executable in a for a in argv if a.startswith("spark.pyspark.python="))


@pytest.mark.parametrize("missing", ["spark.kubernetes.container.image", "spark.kubernetes.file.upload.path"])
def test_kubernetes_lines_need_image_and_upload_path(missing):
    conf = {"spark.kubernetes.container.image": "registry.example/ziya2:1",
            "spark.kubernetes.file.upload.path": "s3a://b/uploads"}
    sets = ["pipeline.cluster.master=k8s://https://k8s.example:443", "pipeline.cluster.python=/usr/bin/python3"]
    with pytest.raises(ValueError, match=re.escape(f"pipeline.cluster.conf.{missing}")):
        submit_lines(str(ROOT / "conf/pipeline.yaml"),
                     sets + [f"pipeline.cluster.conf.{k}={v}" for k, v in conf.items() if k != missing],
                     ["s3a://b/in"], "s3a://b/run")
    lines = submit_lines(str(ROOT / "conf/pipeline.yaml"), sets + [f"pipeline.cluster.conf.{k}={v}" for k, v in conf.items()],
                         ["s3a://b/in"], "s3a://b/run")
    subs = [shlex.split(l) for l in lines if "spark-submit" in l.split(" ")[0]]
    assert subs and all(f"{k}={v}" in argv for argv in subs for k, v in conf.items())


def test_default_conf_under_py_files_is_the_zips(zipped, tmp_path):
    """`dataflow` imported from the zip alone (no site, so no editable install): the default configuration loads
    from the zip's conf/ and its lexicons exist as files."""
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    code = ("from dataflow.core.config import DEFAULT_CONF\n"
            "from dataflow.pipeline.conf import load_conf, require_files\n"
            "import dataflow\n"
            "cfg = load_conf()\n"
            "require_files(cfg, ['filter'])\n"
            "print(dataflow.__file__); print(DEFAULT_CONF)")
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": f"{zipped}{os.pathsep}{site}"})
    assert r.returncode == 0, r.stderr[-3000:]
    mod, conf = r.stdout.split()
    assert mod == f"{zipped}/dataflow/__init__.py"
    assert Path(conf).is_file() and not conf.startswith(str(zipped))
    assert Path(conf).read_bytes() == (ROOT / "conf/pipeline.yaml").read_bytes()
