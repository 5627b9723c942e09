"""The validated configuration (#11.5), path resolution from any directory (#13.3) and Spark settings
precedence (#13.4). Misconfigurations are run as real jobs in subprocesses: each must fail on the driver
in under 15 s with one line naming the key, before a JVM starts."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow.core.confschema import ConfigError
from dataflow.pipeline.conf import load_conf
from dataflow.trainset.mix import load_mixer
from dataflow.core.spark import read_spark_defaults, session_settings

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configurations_validate():
    cfg = load_conf()
    assert cfg["preprocess"]["keep_langs"] == ["zh", "en"]
    mcfg = load_mixer(ROOT / "conf" / "mixer.yaml")
    assert "seq_len" not in mcfg   # one home: pipeline.yaml pack.seq_len
    assert Path(mcfg["pipeline_conf"]) == ROOT / "conf" / "pipeline.yaml"


@pytest.mark.parametrize("override, key, expected", [
    ("preprocess.keep_langs=zh", "preprocess.keep_langs", "a list of"),
    ("preprocess.max_doc_bytes=-1", "preprocess.max_doc_bytes", ">= 1"),
    ("preprocess.lang_threshold=abc", "preprocess.lang_threshold", "a number >= 0 and <= 1"),
    ("preprocess.lang_thresold=0.6", "preprocess.lang_thresold", "did you mean lang_threshold"),
    ("dedup.steps=[url,exactt]", "dedup.steps[1]", "one of url, exact"),
    ("score.percentile_high=0.9", "score.percentile_high", "<= percentile_low"),
])
def test_misconfiguration_fails_fast_with_one_line(tmp_path, corpus_dir, override, key, expected):
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", str(corpus_dir / "docs.jsonl"),
                        "--output", str(tmp_path / "out"), "--set", override],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith(f"error: {key}:") and expected in errors[0], errors[0]
    assert took < 15, took
    assert not (tmp_path / "out").exists()   # nothing written, no Spark work


def test_every_mistake_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_conf(overrides=["preprocess.keep_langs=zh", "filter.examples_per_rule=-2", "dedup.t2s=maybe"])
    keys = sorted(line.split(":", 1)[0] for line in e.value.errors)
    assert keys == ["dedup.t2s", "filter.examples_per_rule", "preprocess.keep_langs"]


def test_missing_model_fails_on_the_driver_naming_key_and_path(tmp_path, corpus_dir):
    missing = tmp_path / "no-such-langid.bin"
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", str(corpus_dir / "docs.jsonl"),
                        "--output", str(tmp_path / "out"), "--set", f"preprocess.langid_model={missing}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert f"preprocess.langid_model = {missing}" in p.stderr
    assert time.time() - t0 < 15
    assert "Traceback" not in p.stderr


def test_truncated_model_fails_on_the_driver_before_any_work(tmp_path, corpus_dir, models_dir):
    """A language-ID model cut short still loads and gives every text one label (all documents would be
    rejected as `lang`): its smoke prediction fails it on the driver, naming the file, and nothing is written.
    The intact model passes the same check in every other test that runs DP."""
    data = (models_dir / "langid.bin").read_bytes()
    cut = tmp_path / "langid-cut.bin"
    cut.write_bytes(data[: len(data) * 6 // 10])
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", str(corpus_dir / "docs.jsonl"),
                        "--output", str(tmp_path / "out"), "--set", f"preprocess.langid_model={cut}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert f"language-ID model {cut} fails its smoke test" in p.stderr and "Traceback" not in p.stderr
    assert time.time() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_paths_resolve_against_the_config_not_the_cwd(tmp_path):
    code = ("import json; from dataflow.pipeline.conf import load_conf; c = load_conf(overrides=['score.cutoffs_file=c.json']);"
            "print(json.dumps([c['preprocess']['langid_model'], c['filter']['rules']['content']['porn_density']"
            "['lexicons']['en'], c['score']['cutoffs_file'], c['spark']['master']]))")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    import json

    langid, lexicon, cutoffs, master = json.loads(p.stdout)
    assert langid == str(ROOT / "build" / "models" / "langid.bin")
    assert lexicon == str(ROOT / "conf" / "rules" / "porn.en.txt") and Path(lexicon).exists()
    assert cutoffs == str(tmp_path / "c.json")      # a --set path is the user's: relative to the cwd
    assert master == "local[*]"                     # not a path: untouched


def test_set_keeps_dots_of_spark_keys():
    cfg = load_conf(overrides=["spark.conf.spark.sql.shuffle.partitions=2000"])
    assert cfg["spark"]["conf"]["spark.sql.shuffle.partitions"] == 2000
    assert "spark" not in cfg["spark"]["conf"]       # no bogus nested key


def test_spark_defaults_and_submit_conf_win_over_the_yaml(tmp_path):
    (tmp_path / "spark-defaults.conf").write_text("# site settings\nspark.sql.shuffle.partitions   3\n"
                                                  "spark.driver.memory=1g\n")
    existing = read_spark_defaults({"SPARK_CONF_DIR": str(tmp_path),
                                    "PYSPARK_SUBMIT_ARGS": "--conf spark.sql.adaptive.enabled=false pyspark-shell"})
    assert existing == {"spark.sql.shuffle.partitions": "3", "spark.driver.memory": "1g",
                        "spark.sql.adaptive.enabled": "false"}
    cfg = load_conf(overrides=["spark.conf.spark.sql.shuffle.partitions=2000"])
    got = session_settings(cfg, existing)
    assert "spark.sql.shuffle.partitions" not in got and "spark.driver.memory" not in got
    assert "spark.sql.adaptive.enabled" not in got
    assert got["spark.sql.files.maxPartitionBytes"] == str(cfg["spark"]["conf"]["spark.sql.files.maxPartitionBytes"])
    assert session_settings(cfg, {})["spark.sql.shuffle.partitions"] == "2000"


def test_local_mode_gets_the_local_jvm_options_and_no_ui():
    """local[...] runs the executors inside the driver JVM: `spark.local_java_options` join the log4j option on
    its command line and the web UI is off; a cluster master gets neither; a user's own setting wins."""
    cfg = load_conf()
    opts = cfg["spark"]["local_java_options"]
    assert opts
    local = session_settings(cfg, {}, local=True)
    assert opts in local["spark.driver.extraJavaOptions"].split(" ") or opts in local["spark.driver.extraJavaOptions"]
    assert "log4j2.configurationFile" in local["spark.driver.extraJavaOptions"]
    assert local["spark.ui.enabled"] == "false"
    assert opts not in local.get("spark.executor.extraJavaOptions", "")
    cluster = session_settings(cfg, {}, local=False)
    assert opts not in cluster.get("spark.driver.extraJavaOptions", "") and "spark.ui.enabled" not in cluster
    mine = session_settings(cfg, {"spark.driver.extraJavaOptions": "-Xss4m"}, local=True)
    assert "spark.driver.extraJavaOptions" not in mine
    off = session_settings(load_conf(overrides=["spark.local_java_options=null"]), {}, local=True)
    assert opts not in off["spark.driver.extraJavaOptions"]


def test_spark_submit_conf_wins_in_a_real_session(tmp_path):
    """One real spark-submit: its --conf beats the YAML, spark-defaults.conf beats the YAML, a dotted --set
    reaches Spark as one key, and the YAML fills what nobody set."""
    from pyspark.find_spark_home import _find_spark_home

    (tmp_path / "spark-defaults.conf").write_text("spark.sql.files.maxPartitionBytes 4242\n")
    script = tmp_path / "show.py"
    script.write_text(
        "from dataflow.pipeline.conf import load_conf\nfrom dataflow.core.spark import get_session\n"
        "s = get_session(load_conf(overrides=['spark.conf.spark.sql.adaptive.enabled=false']))\n"
        "print('RESULT', *[s.conf.get(k) for k in ('spark.sql.shuffle.partitions', 'spark.sql.files.maxPartitionBytes',"
        " 'spark.sql.adaptive.enabled', 'spark.sql.execution.arrow.maxRecordsPerBatch')])\ns.stop()\n")
    env = dict(os.environ, SPARK_CONF_DIR=str(tmp_path), PYSPARK_PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    submit = os.path.join(_find_spark_home(), "bin", "spark-submit")
    p = subprocess.run([submit, "--master", "local[1]", "--driver-memory", "1g",
                        "--conf", "spark.sql.shuffle.partitions=5", str(script)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    result = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")).split()[1:]
    yaml_batch = str(load_conf()["spark"]["conf"]["spark.sql.execution.arrow.maxRecordsPerBatch"])
    assert result == ["5", "4242", "false", yaml_batch]


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """A 'billion laughs' alias nest in --set, in a configuration file or in a trainer YAML is refused when it is
    parsed, naming the alias, in well under a second (expanded, it would be 10^9 strings)."""
    from trainer.config import load_config

    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    t0 = time.time()
    with pytest.raises(ValueError, match=r"aliases are not allowed.*\*a"):
        load_conf(overrides=["evaluate.suspicion={" + ", ".join(lines) + "}"])
    conf = tmp_path / "pipeline.yaml"
    conf.write_text((ROOT / "conf" / "pipeline.yaml").read_text() + "\nbomb:\n" + "".join(f"  {l}\n" for l in lines))
    with pytest.raises(ValueError, match=r"aliases are not allowed.*\*a"):
        load_conf(conf)
    train = tmp_path / "train.yaml"
    train.write_text((ROOT / "conf" / "train" / "tiny.yaml").read_text() + "\nx: &x 1\ny: *x\n")
    with pytest.raises(Exception, match=r"aliases are not allowed.*\*x"):
        load_config(train)
    assert time.time() - t0 < 5
    # an anchor that nothing refers to is plain YAML and stays accepted
    assert load_conf(overrides=["evaluate.strata=&s [source_type]"])["evaluate"]["strata"] == ["source_type"]
