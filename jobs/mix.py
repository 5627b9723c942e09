"""Build the three training stages from tokenized data: per-source sampling and epochs, packing, shards
and manifests (the trainer's input).

  python -m jobs.mix --conf conf/mixer.yaml --output build/runs/demo/mix \
      [--input pretrain=build/runs/demo/tokenized/pretrain supervised=...] [--tokenizer PATH] \
      [--stages 1 2] [--set pack.seq_len=512 ...]

Writes OUT/stage{N}/manifest.json, OUT/stage{N}/shards/part-XXXXX.parquet (rows of exactly pack.seq_len
tokens), OUT/stage{N}/{data,rejected,stats.json,_SUCCESS} (per-example accounting: packed or rejected with a
reason) and OUT/manifest.json listing the stage manifests in order. See docs/pack.md for the contract.
"""
import argparse

from dataflow.core.cli import dump, main_guard


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conf", default="conf/mixer.yaml", metavar="YAML", help="mixer configuration (default: conf/mixer.yaml)")
    ap.add_argument("--output", "-o", required=True, metavar="OUT", help="output directory (stage1/ stage2/ stage3/ manifest.json)")
    ap.add_argument("--input", "-i", nargs="*", default=[], metavar="NAME=PATH",
                    help="override a named input of the mixer conf (a jobs.encode output directory)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model the inputs were tokenized with (default: the conf's)")
    ap.add_argument("--pipeline-conf", default=None, help="pipeline YAML whose `pack` and `spark` sections apply (default: the mixer conf's pipeline_conf)")
    ap.add_argument("--stages", nargs="*", type=int, default=None, help="build only these stages (default: all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a mixer value, e.g. --set seed=7; `pack.<key>=...` (pack.seq_len) and "
                         "`spark.<key>=...` override the pipeline conf")
    ap.add_argument("--verbose", "-v", action="store_true", help="Spark's own log lines and progress bars")
    ap.add_argument("--force", action="store_true", help="accepted for symmetry with `make pipeline`; the job always reruns")
    args = ap.parse_args(argv)

    from dataflow.trainset.mix import load_all, mix
    from dataflow.core.recipes import default_type
    from dataflow.core.spark import get_session

    mcfg, cfg = load_all(args.conf, args.overrides, args.input, args.tokenizer, args.pipeline_conf)
    spark = get_session(cfg, app_name="ziya2-mix", verbose=args.verbose)
    res = mix(spark, mcfg, cfg["pack"], args.output, stages=args.stages, default_type=default_type(cfg))
    for n, m in sorted(res["stages"].items()):
        print(f"[mix] stage {n}: {m['rows']} rows x {m['seq_len']}, efficiency {m['efficiency']}, "
              f"tokens {dump(m['tokens']).replace(chr(10), '')}", flush=True)
    return res


if __name__ == "__main__":
    main_guard(main)
