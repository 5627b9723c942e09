"""Pack one tokenized dataset into rows of exactly seq_len tokens (the trainer's shard format).

  python -m jobs.pack --input build/runs/tokenized/pretrain --output build/runs/packed/pretrain --mode pretrain
  python -m jobs.pack --input build/runs/tokenized/sft --output build/runs/packed/sft --mode supervised

--mode pretrain: seeded global shuffle, greedy concatenation, long documents split into segments (stage 1).
--mode supervised: examples grouped by `type`, bin-packed whole (first-fit decreasing); an example longer
than seq_len goes to rejected/ (reason too_long), a record without `type` too (malformed:no_type).
Writes OUT/shards/part-XXXXX.parquet, OUT/manifest.json (rows, tokens per source, padding, efficiency),
OUT/data (one record per packed document: id, source, group, row), OUT/rejected, OUT/stats.json, OUT/_SUCCESS.
jobs.mix does the same per training stage, after sampling. Settings: the `pack` section of conf/pipeline.yaml.
"""
from dataflow.core.cli import main_guard, run_job, stage_argparser


def main(argv=None):
    ap = stage_argparser("pack", __doc__, input_help="a jobs.encode output directory (or its data/ Parquet)")
    ap.add_argument("--mode", choices=["pretrain", "supervised"], required=True, help="stage-1 concatenation or stage-2/3 bin packing")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model the input was tokenized with (default: tokenizer.model in the conf); recorded in the manifest")
    ap.add_argument("--stage", type=int, default=None, help="stage number written to the manifest (default: 1 for pretrain, null otherwise)")
    args = ap.parse_args(argv)
    if args.tokenizer:
        args.overrides.append(f"tokenizer.model={args.tokenizer}")

    def body(spark, cfg):
        from dataflow.trainset import pack

        m, stats = pack.run(spark, args.input, args.output, cfg["pack"], args.mode, cfg["tokenizer"]["model"],
                            stage_no=args.stage, allow_incomplete=args.allow_incomplete)
        print(f"[pack] {m['rows']} rows, efficiency {m['efficiency']}", flush=True)
        return stats

    return run_job("pack", args, body, files=("tokenizer",))


if __name__ == "__main__":
    main_guard(main)
