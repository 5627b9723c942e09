"""`make demo`: the whole factory on the sample corpus, then tokenizer -> tokenize -> mix -> a few trainer steps.

  python -m jobs.demo --corpus build/corpus/out/fixture --models build/models --output build/runs/demo

Input: the fixture's WARC files (warc/) plus docs.jsonl (docs.jsonl alone when warc/ is missing). Every step is
a subprocess of the step's own job, so its progress shows as it runs; a step whose job module does not exist in
this checkout is skipped with a note. The data stages resume like `make pipeline` (rerun = only what changed);
the later steps are skipped when their output is complete (`--force` redoes everything). Ends with the report path and a per-stage table.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


from dataflow.config import DEFAULT_CONF, REPO_ROOT, load_conf, section
from dataflow.pipeline import plan


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


def exists(module: str) -> bool:
    return (REPO_ROOT / (module.replace(".", "/") + ".py")).exists()


def step(title: str, cmd: list[str], done_marker: Path | None, force: bool) -> bool:
    """Run one step as a subprocess with its output streaming through; False if the module is missing."""
    module = cmd[2] if cmd[1:2] == ["-m"] else None
    if module and not exists(module):
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


def summary_rows(dirs: list[tuple[str, Path]]) -> list[tuple[str, ...]]:
    rows = [("stage", "in", "kept", "top rejection reasons", "docs/s")]
    for name, d in dirs:
        p = d / "stats.json"
        if not p.exists():
            continue
        st = json.loads(p.read_text())
        top = sorted((st.get("rejected") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append((name, f"{st.get('input', '-')}", f"{st.get('kept', '-')}",
                     ", ".join(f"{r}={n}" for r, n in top) or "-", f"{st.get('docs_per_s', '-')}"))
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    t_all = time.time()
    py = sys.executable
    corpus, out = Path(a.corpus), Path(a.output)
    if not (corpus / "docs.jsonl").exists():
        raise SystemExit(f"[demo] {corpus}/docs.jsonl is missing: run `make data` first")
    inputs = [str(corpus / "docs.jsonl")]
    if (corpus / "warc").is_dir() and any((corpus / "warc").iterdir()):
        inputs.insert(0, str(corpus / "warc"))
    else:
        print(f"[demo] {corpus}/warc is missing: running on docs.jsonl alone", flush=True)
    # the models directory replaces the conf's model paths (same strings for the default, so same hashes)
    sets = []
    if (Path(a.models) / "langid.bin").exists():
        sets.append(f"preprocess.langid_model={Path(a.models) / 'langid.bin'}")
    if (Path(a.models) / "lm").is_dir():
        sets.append(f"score.model_dir={Path(a.models) / 'lm'}")
    sets += a.overrides
    set_args = [x for s in sets for x in ("--set", s)]

    run = out / "pipeline"
    step("data factory: DP -> AS -> RF -> CD -> DE (make pipeline)",
         [py, "-m", "jobs.pipeline", "--input", *inputs, "--output", str(run), "--conf", a.conf, *set_args,
          *(["--force"] if a.force else [])], None, False)
    cfg = load_conf(a.conf, sets)
    steps = [s for s in plan(cfg, inputs, str(run)) if not s["missing"]]
    data_steps = [s for s in steps if s["name"] != "evaluate"]
    final = Path(data_steps[-1]["output"]) if data_steps else None
    evaluate_dir = next((Path(s["output"]) for s in steps if s["name"] == "evaluate"), None)

    trained = False
    tok_dir = out / "tokenizer"
    tok_model = tok_dir / "tokenizer.model"
    if final is not None:
        step("tokenizer: SentencePiece BPE on the kept documents",
             [py, "-m", "jobs.train_tokenizer", "--input", str(final), "--output", str(tok_dir), "--conf", a.conf,
              "--set", f"tokenizer.train.vocab_size={a.vocab_size}"],
             tok_model, a.force)
        if tok_model.exists():
            step("tokenize: pipeline output (pretraining documents)",
                 [py, "-m", "jobs.encode", "--input", str(final), "--output", str(out / "tokenized" / "pretrain"),
                  "--model", str(tok_model), "--conf", a.conf], out / "tokenized" / "pretrain" / "_SUCCESS", a.force)
            step("tokenize: supervised examples (HumanEval code, CHAMP math)",
                 [py, "-m", "jobs.encode", "--input", str(corpus / "docs.jsonl"),
                  "--output", str(out / "tokenized" / "supervised"), "--model", str(tok_model), "--conf", a.conf],
                 out / "tokenized" / "supervised" / "_SUCCESS", a.force)
            mixed = step("mix: three training stages, packed 4096-token rows",
                         [py, "-m", "jobs.mix", "--conf", "conf/mixer.yaml", "--output", str(out / "mix"),
                          "--input", f"pretrain={out / 'tokenized' / 'pretrain'}",
                          f"supervised={out / 'tokenized' / 'supervised'}", "--tokenizer", str(tok_model),
                          "--pipeline-conf", a.conf], out / "mix" / "manifest.json", a.force)
            if mixed and a.train_steps > 0 and (out / "mix" / "manifest.json").exists():
                trained = step(f"train: tiny LLaMA, {a.train_steps} steps per stage (DeepSpeed on CPU)",
                               [py, "-m", "trainer.train", "--config", "conf/train/tiny.yaml",
                                "--set", f"data.root={out / 'mix'}", "--set", f"data.steps_per_stage={a.train_steps}",
                                "--set", f"metrics.dir={out / 'train'}", "--set", f"checkpoint.dir={out / 'train' / 'ckpt'}"],
                               None, False)

    print(f"\n[demo] finished in {time.time() - t_all:.0f}s\n")
    print_table(summary_rows([(s["dir"], Path(s["output"])) for s in steps]
                             + [(f"tokenize/{k}", out / "tokenized" / k) for k in ("pretrain", "supervised")]))
    if evaluate_dir is not None and (evaluate_dir / "report.html").exists():
        print(f"\nreport:       {evaluate_dir / 'report.html'}  (summary: {evaluate_dir / 'report.md'})")
        print(f"review sheet: {evaluate_dir / 'review.csv'}; after review: python -m jobs.evaluate "
              f"--output {evaluate_dir} --labels <reviewed.csv>")
    if (out / "mix" / "manifest.json").exists():
        print(f"mixer:        {out / 'mix' / 'manifest.json'}")
    if trained:
        print(f"training log: {out / 'train'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
