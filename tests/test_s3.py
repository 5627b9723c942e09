"""Object storage, for real: a local S3-compatible server (moto in server mode, on 127.0.0.1 with a free port)
holds the raw input and receives the side files.

- DP reads WARC and JSONL from `s3://bucket/...` (listed on the driver and streamed in executors through
  `dataflow.core.fs`), and keeps the same documents as a run over the same files on local disk.
- The ids and decisions (id -> kept or reason) of that DP run are the same as the local run's (DESIGN §9).
- The model trainers read their inputs from and write their products to `s3://` (langid, vocabulary expansion).
- A stage attempt on an `s3://` output writes its side files (stats.json, cutoffs, examples), commits them and
  writes `_SUCCESS` last; readers refuse the output before that; the pipeline's resume state lives there too.

Spark's own Parquet writes to `s3a://` need Hadoop's s3a connector jars (hadoop-aws), which cannot be
installed here, so DP's data/ goes to local disk in this test (README: "Object storage and HDFS").
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import gzip_members

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
BUCKET = "ziya2-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server; the AWS_* variables point dataflow.core.fs (here and in subprocesses) at it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    p = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in p.stdout:   # blocks until the server says it listens (or exits)
        seen.append(line)
        if f"127.0.0.1:{port}" in line and "Running on" in line:
            break
    assert p.poll() is None, "".join(seen)
    # moto logs every request: keep reading its output (the last lines kept), or a full pipe stalls the server
    tail = collections.deque(seen, maxlen=200)
    threading.Thread(target=tail.extend, args=(p.stdout,), daemon=True).start()
    keys = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    import boto3

    client = boto3.client("s3", endpoint_url=keys["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        p.terminate()
        p.wait(timeout=30)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from dataflow.core import fs
        fs._FS.clear()   # cached S3 filesystems point at the stopped server


def keys_under(client, prefix: str) -> list[str]:
    """Object keys, without the empty `dir/` markers pyarrow puts for directories."""
    out = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in out.get("Contents", []) if not o["Key"].endswith("/"))


@pytest.fixture(scope="module")
def raw_input(corpus_dir, models_dir, tmp_path_factory) -> Path:
    """A slice of the sample corpus on local disk: two WARC files and every 10th docs.jsonl record."""
    d = tmp_path_factory.mktemp("s3_in")
    for w in sorted((corpus_dir / "warc").glob("*.warc.gz"))[:2]:
        shutil.copy(w, d / w.name)
    lines = (corpus_dir / "docs.jsonl").read_text(encoding="utf-8").splitlines()
    (d / "docs.jsonl").write_text("\n".join(lines[::10]) + "\n", encoding="utf-8")
    return d


def run_dp(inp: str, out: Path) -> dict:
    e = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    r = subprocess.run([sys.executable, "-m", "jobs.preprocess", "--input", inp, "--output", str(out),
                        "--set", "spark.master=local[2]"], cwd=ROOT, env=e, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads((out / "stats.json").read_text())


def stage_rows(stage_dir: Path, sub: str) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for f in sorted((stage_dir / sub).glob("part-*")) for r in pq.read_table(f).to_pylist()]


def texts(stage_dir: Path, sub: str) -> list[tuple]:
    return sorted((r["url"] or "", r["text"] or "", r.get("reason") or "") for r in stage_rows(stage_dir, sub))


def decisions(stage_dir: Path) -> dict[str, str]:
    """id -> "kept" or the rejected row's reason, over both outputs of a DP run (an id seen twice fails)."""
    out: dict[str, str] = {}
    for sub in ("data", "rejected"):
        for r in stage_rows(stage_dir, sub):
            assert r["id"] not in out, (sub, r["id"])
            out[r["id"]] = r["reason"] if sub == "rejected" else "kept"
            assert out[r["id"]], r   # a rejected row always names its reason
    return out


def test_dp_ingests_from_s3(s3, raw_input, tmp_path):
    uploaded = 0
    for f in sorted(raw_input.iterdir()):
        s3.upload_file(str(f), BUCKET, f"crawl/{f.name}")
        uploaded += 1
    assert len(keys_under(s3, "crawl/")) == uploaded == 3

    local = run_dp(str(raw_input), tmp_path / "local")
    remote = run_dp(f"s3://{BUCKET}/crawl", tmp_path / "remote")
    # our own count of the records uploaded: JSONL lines plus WARC responses (gzip members: warcinfo, then a
    # request and a response per page)
    n_jsonl = len((raw_input / "docs.jsonl").read_text(encoding="utf-8").splitlines())
    n_pages = sum((len(gzip_members(w)) - 1) // 2 for w in raw_input.glob("*.warc.gz"))
    assert n_pages > 0
    assert remote["input"] == n_jsonl + n_pages == local["input"]
    assert (remote["kept"], remote["rejected"]) == (local["kept"], local["rejected"])
    assert remote["kept"] + remote["rejected_total"] == remote["input"]
    assert texts(tmp_path / "remote", "data") == texts(tmp_path / "local", "data")
    # DESIGN §9: ids hash the WARC-Record-ID, else source + path relative to the input root + offset, so the
    # same files under a local folder and under s3://bucket/crawl give the same id and the same decision each
    local_d, remote_d = decisions(tmp_path / "local"), decisions(tmp_path / "remote")
    assert remote_d == local_d
    assert len(local_d) == n_jsonl + n_pages
    assert sum(v == "kept" for v in local_d.values()) == local["kept"] > 0
    assert any(v != "kept" for v in local_d.values())      # the rejections are compared too, not only kept rows
    assert any(p.startswith(f"s3://{BUCKET}/crawl") or p.startswith(f"s3a://{BUCKET}/crawl") for p in remote["inputs"])


def test_stage_side_files_commit_to_s3(s3):
    from dataflow.core import fs
    from dataflow.core.stage import Attempt, IncompleteInputError, stage_input_paths

    out = f"s3://{BUCKET}/run/20-score"
    attempt = Attempt(out).begin()
    fs.write_text(attempt.path("cutoffs.json"), json.dumps({"en": {"p30": 340.0, "p60": 520.0}}) + "\n")
    fs.write_text(attempt.path("examples", "length.min_chars.jsonl"), '{"id": "a"}\n{"id": "b"}\n')
    fs.write_text(attempt.path("stats.json"), json.dumps({"stage": "score", "input": 3, "kept": 2}) + "\n")
    # not committed yet: the output is unfinished and every reader refuses it
    assert "run/20-score/_SUCCESS" not in keys_under(s3, "run/")
    with pytest.raises(IncompleteInputError):
        stage_input_paths([out])
    attempt.commit({"stage": "score", "config_hash": "abc"})

    assert keys_under(s3, "run/20-score/") == ["run/20-score/_SUCCESS", "run/20-score/cutoffs.json",
                                               "run/20-score/examples/length.min_chars.jsonl",
                                               "run/20-score/stats.json"]
    body = s3.get_object(Bucket=BUCKET, Key="run/20-score/examples/length.min_chars.jsonl")["Body"].read()
    assert body == b'{"id": "a"}\n{"id": "b"}\n'
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="run/20-score/_SUCCESS")["Body"].read())
    assert marker == {"stage": "score", "config_hash": "abc"}


def test_pipeline_resume_state_on_s3(s3):
    """The pipeline's resume check reads `_SUCCESS` and `.pipeline/<dir>.json` from the run URI."""
    from dataflow.core import fs
    from dataflow.pipeline.conf import load_conf
    from dataflow.pipeline.chain import is_current, plan, state_uri

    run = f"s3://{BUCKET}/chain"
    cfg = load_conf(overrides=["pipeline.stages=[preprocess]"])
    [step] = plan(cfg, [f"s3://{BUCKET}/crawl"], run)
    assert step["output"] == f"{run}/10-preprocess"
    assert not is_current(step, run)
    s3.put_object(Bucket=BUCKET, Key="chain/10-preprocess/_SUCCESS",
                  Body=json.dumps({"config_hash": step["config_hash"]}).encode())
    assert not is_current(step, run)   # finished, but not recorded as this chain's stage
    fs.write_text(state_uri(run, step), json.dumps({"chain_key": step["chain_key"]}))
    assert "chain/.pipeline/10-preprocess.json" in keys_under(s3, "chain/")
    assert is_current(step, run)
    [other] = plan(cfg, [f"s3://{BUCKET}/other-crawl"], run)   # another input: another chain key
    assert not is_current(other, run)


# ---------------------------------------------------------------- every product through the filesystem layer
@pytest.fixture()
def s3_spark(spark, s3):
    """The session's executors reach the S3 server too: the AWS_* variables in `sc.environment`, which is where
    `spark.executorEnv.*` lands on a cluster (Python workers started before the server never saw them)."""
    keys = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_DEFAULT_REGION")}
    env = spark.sparkContext.environment
    old = {k: env.get(k) for k in keys}
    env.update(keys)
    try:
        yield spark
    finally:
        for k, v in old.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v


def _object(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _docs_frame(spark, docs: list[dict]):
    import pyarrow as pa

    from dataflow.core.schema import DOC_ARROW_SCHEMA

    rows = [{"id": d["id"], "source": d["source"], "url": None, "text": d["text"],
             "lang": "zh" if d["lang"].startswith("zh") else d["lang"], "lang_score": 0.9, "meta": {},
             "source_type": "web"} for d in docs]
    return spark.createDataFrame(pa.Table.from_pylist(rows, schema=DOC_ARROW_SCHEMA)).repartition(3)


def _no_local_s3_dir(*dirs: Path) -> None:
    for d in dirs:
        assert not [p.name for p in d.iterdir() if p.name.lower().startswith(("s3:", "s3a:"))], d


def test_evaluate_report_sheet_and_gate_on_s3(s3, s3_spark, corpus_docs, tmp_path, monkeypatch):
    """DE with OUT = s3://...: the sample, review sheet, metrics, plots and report land in the bucket (the same
    bytes as a run into a local folder), the funnel is read from a stage's stats.json in the bucket, a reviewed
    sheet in the bucket gates, and nothing named `s3:` appears on local disk."""
    import io

    import pyarrow.parquet as pq

    from dataflow.pipeline.conf import load_conf
    from dataflow.stages.evaluate.stage import evaluate, gate

    monkeypatch.chdir(tmp_path)
    conf = load_conf()
    cfg = dict(conf["evaluate"], sample_share=0.05, sheet_text_chars=300)
    docs = corpus_docs[::4]
    df = _docs_frame(s3_spark, docs)
    filter_stats = {"stage": "filter", "input": len(docs) + 7, "kept": len(docs), "rejected_total": 7,
                    "rejected": {"c4.lorem_ipsum": 7}, "chars": {"input": 1000, "kept": 900}}
    s3.put_object(Bucket=BUCKET, Key="de/30-filter/stats.json", Body=json.dumps(filter_stats).encode())
    out = f"s3://{BUCKET}/de/50-evaluate"

    m = evaluate(s3_spark, df, cfg, out, stage_dirs=[f"s3://{BUCKET}/de/30-filter"], dedup_cfg=conf["dedup"])
    local = evaluate(s3_spark, df, cfg, tmp_path / "local", stage_dirs=(), dedup_cfg=conf["dedup"])

    keys = keys_under(s3, "de/50-evaluate/")
    names = {k.split("/", 2)[2] for k in keys}
    assert {"review.jsonl", "review.csv", "metrics.json", "report.html", "report.md"} <= names
    assert any(n.startswith("plots/") and n.endswith(".png") for n in names)
    assert not [n for n in names if n.startswith("_") or "/_" in n], names      # no staging left behind
    for name in ("review.jsonl", "review.csv"):
        assert _object(s3, f"de/50-evaluate/{name}") == (tmp_path / "local" / name).read_bytes(), name
    sheet = [json.loads(line) for line in _object(s3, "de/50-evaluate/review.jsonl").decode().splitlines()]
    texts = {d["id"]: d["text"] for d in docs}
    sample_ids = sorted(r["id"] for k in keys if k.startswith("de/50-evaluate/sample/")
                        for r in pq.read_table(io.BytesIO(_object(s3, k))).to_pylist())
    assert sheet and sorted(r["id"] for r in sheet) == sample_ids         # the whole sample (under max_rows)
    assert all(r["text"] == texts[r["id"]] for r in sheet)
    assert m["sheet"]["rows"] == len(sheet) == local["sheet"]["rows"] and m["sheet"]["left_out"] == 0
    metrics = json.loads(_object(s3, "de/50-evaluate/metrics.json"))
    assert metrics["funnel"]["stages"][0]["input"] == len(docs) + 7        # read from the bucket's stats.json
    assert b"data:image/png;base64," in _object(s3, "de/50-evaluate/report.html")

    # a reviewer's sheet in the bucket: one unqualified row fails the point gate
    rows = [{"id": r["id"], "source": r["source"], "verdict": "ok", "reason": ""} for r in sheet]
    rows[0].update(verdict="bad", reason="boilerplate")
    body = "id,source,verdict,reason\n" + "".join(f"{r['id']},{r['source']},{r['verdict']},{r['reason']}\n"
                                                  for r in rows)
    s3.put_object(Bucket=BUCKET, Key="reviews/reviewed.csv", Body=body.encode())
    d = gate(out, f"s3://{BUCKET}/reviews/reviewed.csv", dict(cfg, gate_on="point"))
    assert not d["passed"] and d["unqualified"] == 1 and d["reviewed"] == len(rows)
    assert json.loads(_object(s3, "de/50-evaluate/gate.json"))["unqualified_ids"] == [rows[0]["id"]]
    assert "FAIL" in _object(s3, "de/50-evaluate/report.md").decode()
    _no_local_s3_dir(tmp_path, ROOT)


def test_filter_examples_written_to_s3(s3, s3_spark, corpus_docs, tmp_path, monkeypatch):
    """RF's audit examples (examples/<rule>.jsonl) written into an attempt on s3:// by the real writer: the same
    files and bytes as into a local folder, each example a document of the input with its own text before."""
    from dataflow.pipeline.conf import load_conf
    from dataflow.stages.filter.stage import run_with_examples

    monkeypatch.chdir(tmp_path)
    conf = load_conf()
    cfg = conf["filter"]
    docs = corpus_docs[::3]
    df = _docs_frame(s3_spark, docs)
    attempt = f"s3://{BUCKET}/rf/30-filter/_attempt-test"
    remote = run_with_examples(df, cfg, attempt, conf)
    run_with_examples(df, cfg, str(tmp_path / "local"), conf)

    keys = keys_under(s3, "rf/30-filter/_attempt-test/examples/")
    local_files = sorted((tmp_path / "local" / "examples").glob("*.jsonl"))
    assert keys and [k.rsplit("/", 1)[1] for k in keys] == [f.name for f in local_files]
    texts = {d["id"]: d["text"] for d in docs}
    cap, per_rule = int(cfg["example_max_chars"]), int(cfg["examples_per_rule"])
    for key, f in zip(keys, local_files):
        body = _object(s3, key)
        assert body == f.read_bytes(), key
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert 0 < len(lines) <= per_rule
        for ex in lines:
            assert ex["before"] == texts[ex["id"]][:cap], (key, ex["id"])
    remote.annotated.unpersist()
    _no_local_s3_dir(tmp_path, ROOT)


def test_train_tokenizer_writes_its_model_to_s3(s3, s3_spark, corpus_docs, tmp_path, monkeypatch):
    """jobs.train_tokenizer's work with OUT = s3://...: the executors write the sampled lines to the bucket, the
    driver trains on a local copy and puts the model, vocabulary, lines and report in the bucket."""
    import sentencepiece as spm

    from dataflow.models.tokenizer.train import train
    from dataflow.pipeline.conf import load_conf

    monkeypatch.chdir(tmp_path)
    tcfg = dict(load_conf()["tokenizer"]["train"], vocab_size=600, character_coverage=0.98)
    docs = [d for d in corpus_docs if d["source"] == "dict-devil"][::4]   # English: 600 pieces hold its letters
    rep = train(s3_spark, _docs_frame(s3_spark, docs), f"s3://{BUCKET}/models/tok", tcfg)

    assert keys_under(s3, "models/tok/") == [f"models/tok/{n}" for n in (
        "tokenizer.model", "tokenizer.vocab", "train_sentences.txt", "vocab_report.json", "vocab_report.md")]
    # our own count of the lines the sample holds (sample_fraction 1.0, max_docs above len(docs))
    expected = sorted(line for d in docs for line in d["text"].split("\n") if line.strip(" "))
    got = _object(s3, "models/tok/train_sentences.txt").decode("utf-8").split("\n")
    assert got[-1] == "" and sorted(got[:-1]) == expected
    sp = spm.SentencePieceProcessor(model_proto=_object(s3, "models/tok/tokenizer.model"))
    assert sp.get_piece_size() == 600 == rep["vocab_size"]
    line = next(line for line in expected if line.strip())
    assert sp.decode(sp.encode(line)) == line
    assert rep["model"] == f"s3://{BUCKET}/models/tok/tokenizer.model"
    assert json.loads(_object(s3, "models/tok/vocab_report.json"))["sample_docs"] == len(docs)
    _no_local_s3_dir(tmp_path, ROOT)


def test_train_langid_reads_and_writes_s3(s3, tmp_path, monkeypatch):
    """jobs.train_langid with its catalogues in the bucket and OUT = s3://...: the model, its report and the
    markdown table land in the bucket, and the model is byte for byte the one a run from and into local
    folders trains (seeded, one thread); it loads back from the bucket and names the languages it was given."""
    from dataflow.models.langid.model import load_model, predict

    monkeypatch.chdir(tmp_path)
    rows = [json.loads(line) for line in
            (ROOT / "build/corpus/out/langid/samples.jsonl").read_text(encoding="utf-8").splitlines()]
    some = [r for r in rows if r["lang"] in ("en", "zh", "it", "es", "ru")][::4]
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in some)
    s3.put_object(Bucket=BUCKET, Key="cat/samples.jsonl", Body=body.encode("utf-8"))
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "samples.jsonl").write_text(body, encoding="utf-8")
    sets = ["--set", "preprocess.langid_train.epoch=2", "--set", "preprocess.langid_train.bucket=20000",
            "--set", "preprocess.langid_train.min_lang_chars=1000"]

    def job(*args: str) -> str:
        # a fresh process, as `make models` runs it (fastText diverges in-process in a long test session,
        # dataflow/models/refclass.py); the AWS_* variables of the `s3` fixture reach it through the environment
        r = subprocess.run([sys.executable, "-m", "jobs.train_langid", *args, *sets], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return r.stdout

    out = job("--catalogues", f"s3://{BUCKET}/cat", "--output", f"s3://{BUCKET}/models/langid.bin",
              "--markdown", f"s3://{BUCKET}/models/langid.md")
    assert f"s3://{BUCKET}/models/langid.bin" in out
    job("--catalogues", str(tmp_path / "cat"), "--output", str(tmp_path / "langid.bin"))
    local = json.loads((tmp_path / "langid.bin.json").read_text(encoding="utf-8"))

    assert keys_under(s3, "models/langid") == ["models/langid.bin", "models/langid.bin.json", "models/langid.md"]
    model_bytes = _object(s3, "models/langid.bin")
    assert model_bytes == (tmp_path / "langid.bin").read_bytes() and len(model_bytes) > 0
    report = json.loads(_object(s3, "models/langid.bin.json"))
    assert report["labels"] == ["en", "es", "it", "ru", "zh"] == local["labels"]
    assert report["holdout"] == local["holdout"]
    assert "| en |" in _object(s3, "models/langid.md").decode("utf-8")
    (tmp_path / "back.bin").write_bytes(model_bytes)
    model = load_model(str(tmp_path / "back.bin"))
    zh = next(r["text"] for r in some if r["lang"] == "zh" and len(r["text"]) > 20)
    assert predict(model, zh)[0] == "zh"
    _no_local_s3_dir(tmp_path, ROOT)


def test_expand_vocab_reads_base_and_writes_to_s3(s3, s3_spark, corpus_docs, tmp_path, monkeypatch):
    """jobs.expand_vocab with --base and --output on s3://: the expanded model, init_map.json and the report
    land in the bucket; loaded back, the old ids are unchanged, the added characters are the corpus's most
    frequent Han characters the base lacks (counted here) and each encodes as one new id."""
    import sentencepiece as spm
    from collections import Counter

    from dataflow.pipeline.commands import expand_vocab

    monkeypatch.chdir(tmp_path)
    # a base that knows English only (byte fallback for everything else), so every Han character is missing
    en = [line for d in corpus_docs if d["source"] == "dict-devil" for line in d["text"].split("\n") if line.strip()]
    (tmp_path / "en.txt").write_text("\n".join(en) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "en.txt"), model_prefix=str(tmp_path / "base"),
                                   vocab_size=400, model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   num_threads=1, minloglevel=2)
    base_bytes = (tmp_path / "base.model").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="models/base/tokenizer.model", Body=base_bytes)
    zh = [d for d in corpus_docs if d["lang"].startswith("zh")][:20]
    (tmp_path / "zh.jsonl").write_text("".join(json.dumps({"id": d["id"], "text": d["text"]}, ensure_ascii=False)
                                               + "\n" for d in zh), encoding="utf-8")
    n = 30
    rep = expand_vocab(["--base", f"s3://{BUCKET}/models/base/tokenizer.model", "--input", str(tmp_path / "zh.jsonl"),
                        "--output", f"s3://{BUCKET}/models/zh", "--set", f"tokenizer.expand.num_chars={n}",
                        "--set", "tokenizer.expand.min_count=1"])

    assert keys_under(s3, "models/zh/") == ["models/zh/expand_report.json", "models/zh/init_map.json",
                                            "models/zh/tokenizer.model"]
    base = spm.SentencePieceProcessor(model_proto=base_bytes)
    new = spm.SentencePieceProcessor(model_proto=_object(s3, "models/zh/tokenizer.model"))
    old = base.get_piece_size()
    assert new.get_piece_size() == old + n == rep["new_vocab_size"]
    assert all(new.id_to_piece(i) == base.id_to_piece(i) for i in range(old))
    # our own count: CJK Unified Ideographs (and extension A) in the texts, most frequent first, ties by code point
    han = Counter(c for d in zh for c in d["text"] if 0x4E00 <= ord(c) <= 0x9FFF or 0x3400 <= ord(c) <= 0x4DBF)
    expected = [c for c, _ in sorted(han.items(), key=lambda kv: (-kv[1], ord(kv[0])))][:n]
    added = [new.id_to_piece(old + k) for k in range(n)]
    assert added == expected
    init_map = json.loads(_object(s3, "models/zh/init_map.json"))
    assert sorted(map(int, init_map)) == list(range(old, old + n))
    for k, ch in enumerate(added):
        ids = new.encode(ch)
        assert ids[-1] == old + k and all(new.id_to_piece(i) == "▁" for i in ids[:-1])
        assert init_map[str(old + k)] == [i for i in base.encode(ch) if base.id_to_piece(i) != "▁"]
    report = json.loads(_object(s3, "models/zh/expand_report.json"))
    assert report["base_model"] == f"s3://{BUCKET}/models/base/tokenizer.model" and report["added"] == n
    _no_local_s3_dir(tmp_path, ROOT)
