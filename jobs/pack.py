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
import sys
import time
from pathlib import Path


from dataflow.cli import main_guard, run_job, stage_argparser


def main(argv=None):
    ap = stage_argparser("pack", __doc__, input_help="a jobs.encode output directory (or its data/ Parquet)")
    ap.add_argument("--mode", choices=["pretrain", "supervised"], required=True, help="stage-1 concatenation or stage-2/3 bin packing")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model the input was tokenized with (default: tokenizer.model in the conf); recorded in the manifest")
    ap.add_argument("--stage", type=int, default=None, help="stage number written to the manifest (default: 1 for pretrain, null otherwise)")
    args = ap.parse_args(argv)

    def body(spark, cfg):
        from dataflow import pack
        from dataflow.config import section
        from dataflow.stage import StageResult, read_stage_input, write_stage
        from dataflow.tokenize import tokenizer_info

        t0 = time.time()
        pcfg = section(cfg, "pack")
        model = args.tokenizer or section(cfg, "tokenizer")["model"]
        if not Path(model).exists():
            raise FileNotFoundError(f"tokenizer model {model} does not exist")
        tok = tokenizer_info(model, pcfg.get("pad_id"))
        df, paths = read_stage_input(spark, args.input)
        df = df.select("id", "source", "type", "input_ids", "loss_mask", "n_tokens").cache()
        n = df.count()
        packed = pack.pack(df, pcfg, args.mode, tok["pad_id"])
        stats = pack.row_stats(packed.rows, int(pcfg["seq_len"]))
        shards = pack.write_shards(packed.rows, args.output, int(pcfg["seed"]), int(pcfg["rows_per_shard"]), stats["rows"])
        stage = args.stage if args.stage is not None else (1 if args.mode == "pretrain" else None)
        pack.write_manifest(pack.stage_manifest(stage, int(pcfg["seq_len"]), int(pcfg["seed"]), tok, shards, stats,
                                                mode=args.mode), args.output)
        out = write_stage(StageResult(kept=packed.placed, rejected=packed.rejected,
                                      stats={"rows": stats["rows"], "efficiency": stats["efficiency"],
                                             "padding_tokens": stats["padding_tokens"], "packing": stats["packing"]}),
                          args.output, stage="pack", input_count=n, input_paths=paths, cfg=pcfg, t0=t0)
        packed.rows.unpersist()
        df.unpersist()
        print(f"[pack] {stats['rows']} rows, efficiency {stats['efficiency']}", flush=True)
        return out

    return run_job("pack", args, body)


if __name__ == "__main__":
    main_guard(main)
