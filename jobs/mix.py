"""Build the three training stages from tokenized data: per-source sampling and epochs, packing, shards
and manifests (the trainer's input).

  python -m jobs.mix --conf conf/mixer.yaml --output build/runs/demo/mix \
      [--input pretrain=build/runs/demo/tokenized/pretrain supervised=...] [--tokenizer PATH] \
      [--stages 1 2] [--set seq_len=512 ...]

Writes OUT/stage{N}/manifest.json, OUT/stage{N}/shards/part-XXXXX.parquet (rows of exactly seq_len tokens),
OUT/stage{N}/{data,rejected,stats.json,_SUCCESS} (per-example accounting: packed or rejected with a reason)
and OUT/manifest.json listing the stage manifests in order. See docs/pack.md for the contract.
"""
import argparse
import sys
from pathlib import Path


from dataflow.cli import dump, main_guard


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
                    help="override a mixer value, e.g. --set seq_len=512; `pack.<key>=...` overrides the pipeline pack section")
    ap.add_argument("--force", action="store_true", help="accepted for symmetry with `make pipeline`; the job always reruns")
    args = ap.parse_args(argv)

    from dataflow.config import load_conf, section
    from dataflow.mix import load_mixer, mix
    from dataflow.spark import get_session

    mix_over = [o for o in args.overrides if not o.startswith("pack.")]
    pack_over = [o for o in args.overrides if o.startswith("pack.")]
    for item in args.input:
        if "=" not in item:
            raise ValueError(f"--input {item!r} is not NAME=PATH")
        name, path = item.split("=", 1)
        mix_over.append(f"inputs.{name}={path}")
    if args.tokenizer:
        mix_over.append(f"tokenizer={args.tokenizer}")
    mcfg = load_mixer(args.conf, mix_over)
    cfg = load_conf(args.pipeline_conf or mcfg.get("pipeline_conf"), pack_over)
    pcfg = dict(section(cfg, "pack"))
    for name, path in mcfg["inputs"].items():
        if not Path(path).exists():
            raise FileNotFoundError(f"mixer input {name}: {path} does not exist (run jobs.encode first)")
    if not Path(mcfg["tokenizer"]).exists():
        raise FileNotFoundError(f"tokenizer {mcfg['tokenizer']} does not exist")
    spark = get_session(cfg, app_name="ziya2-mix")
    res = mix(spark, mcfg, pcfg, args.output, stages=args.stages)
    for n, m in sorted(res["stages"].items()):
        print(f"[mix] stage {n}: {m['rows']} rows x {m['seq_len']}, efficiency {m['efficiency']}, "
              f"tokens {dump(m['tokens']).replace(chr(10), '')}", flush=True)
    return res


if __name__ == "__main__":
    main_guard(main)
