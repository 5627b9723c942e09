"""`make demo`: the whole factory on the sample corpus, then tokenizer -> tokenize -> mix -> a few trainer steps.

Input: the fixture's WARC files (warc/) plus docs.jsonl (docs.jsonl alone when warc/ is missing), plus the dumps of
every other source type `make data` builds in sources/ (code archives, an arXiv tar, a StackExchange .7z, a
MediaWiki .xml.bz2, a Gutenberg book; `SOURCE_SETS` names them in `sources.inputs`), and CHAMP/HumanEval from
docs.jsonl typed `supervised` (`sources.by_source`). The funnel at the end is shown per source type. The data
factory is the chain of the stage table in one SparkSession of this process (`pipeline.chain.run_chain`); the
later steps are each a subprocess of its own job, so their progress shows as they run. The data stages resume
like `make pipeline` (rerun = only what changed);
the later steps are skipped when their output is complete (`force` redoes everything). Ends with the report path
and a per-stage table.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from dataflow.core import fs
from dataflow.core.config import DEFAULT_CONF, REPO_ROOT
from dataflow.pipeline.chain import plan, run_chain
from dataflow.pipeline.conf import load_conf
from dataflow.pipeline.summary import print_table, stats_rows, type_funnel_rows

# the fixture's dumps by type (kind from the file name, dataflow.ingest.sources.kind_for); CHAMP problems and
# HumanEval programs are supervised data, not web prose (issue 15, Ziya2 §3)
SOURCE_SETS = [
    'sources.inputs=[{match: "*/sources/code/*", type: code}, {match: "*/sources/arxiv/*.tar", type: paper}, '
    '{match: "*/sources/qa/*.7z", type: qa}, {match: "*/sources/wiki/*.xml.bz2", type: wiki}, '
    '{match: "*/sources/books/*.txt", type: book}]',
    "sources.by_source={champ: supervised, human-eval: supervised}",
]


def step(title: str, cmd: list[str], done_marker: Path | None, force: bool) -> bool:
    """Run one step as a subprocess with its output streaming through."""
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

    run_dir = out / "pipeline"
    print("\n[demo] data factory: the stage table in one SparkSession (make pipeline)", flush=True)
    t0 = time.time()
    rc = run_chain(conf, sets, inputs, str(run_dir), force=force, runner="session")
    if rc != 0:
        raise SystemExit(f"[demo] the data factory failed (exit {rc}); rerun `make demo` after fixing it: finished "
                         f"stages are kept")
    print(f"[demo] data factory: {time.time() - t0:.0f}s", flush=True)
    steps = plan(load_conf(conf, sets), inputs, str(run_dir), look=False)   # its directories only
    # the training data comes from the last stage that writes documents; a stage whose products are a report
    # (one that reads the chain's earlier outputs) is not it
    data_steps = [s for s in steps if not s["stage"].uses_upstream]
    final = Path(data_steps[-1]["output"]) if data_steps else None
    report_dir = next((Path(s["output"]) for s in steps if s["stage"].uses_upstream), None)

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
                                "--set", f"metrics.dir={out / 'train'}", "--set", f"checkpoint.dir={out / 'train' / 'ckpt'}",
                                # the held-out loss at the end of each stage, on rows never trained on
                                "--set", f"eval.every={train_steps}", "--set", "eval.fraction=0.2"],
                               None, False)

    print(f"\n[demo] finished in {time.time() - t_all:.0f}s\n")
    print_table(stats_rows([(s["dir"], s["output"]) for s in steps]
                           + [(f"tokenize/{k}", str(out / "tokenized" / k)) for k in ("pretrain", "supervised")]))
    by_type = type_funnel_rows([(s["dir"], s["output"]) for s in steps])
    if len(by_type) > 1:
        print("\nfunnel by source type:")
        print_table(by_type)
    if report_dir is not None and (report_dir / "report.html").exists():
        print(f"\nreport:       {report_dir / 'report.html'}  (summary: {report_dir / 'report.md'})")
        print(f"review sheet: {report_dir / 'review.csv'}; after review: python -m jobs.evaluate "
              f"--output {report_dir} --labels <reviewed.csv>")
    if (out / "mix" / "manifest.json").exists():
        print(f"mixer:        {out / 'mix' / 'manifest.json'}")
    if trained:
        print(f"training log: {out / 'train'}")
        evals = [r for r in map(json.loads, fs.read_text(str(out / "train" / "metrics.jsonl")).splitlines())
                 if "eval_loss" in r]
        for r in evals:
            print(f"held-out loss at step {r['step']} (stage {r['stage']}): {r['eval_loss']:.3f}; by stage "
                  + ", ".join(f"{k}: {v:.3f}" for k, v in sorted((r.get("eval_loss_by_stage") or {}).items())
                              if v is not None))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jobs.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="build/corpus/out/fixture", help="sample corpus (docs.jsonl, warc/)")
    ap.add_argument("--models", default="build/models", help="models directory (langid.bin, lm/)")
    ap.add_argument("--output", default="build/runs/demo", help="demo run directory")
    ap.add_argument("--conf", default=str(DEFAULT_CONF), help="pipeline configuration")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="configuration override for the data stages (repeatable)")
    ap.add_argument("--train-steps", type=int, default=8,
                    help="trainer steps per training stage (conf/train/tiny.yaml data.steps_per_stage; 0 = skip training)")
    ap.add_argument("--vocab-size", type=int, default=4000,
                    help="SentencePiece vocabulary for the demo tokenizer (the few-MB fixture cannot fill LLaMA's 32k; "
                         "a small vocabulary also keeps the tiny model's embedding small)")
    ap.add_argument("--force", action="store_true", help="redo every step, finished or not")
    return ap


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    return run(a.corpus, a.models, a.output, a.conf, a.overrides, train_steps=a.train_steps,
               vocab_size=a.vocab_size, force=a.force)


def cli() -> None:
    sys.exit(main())
