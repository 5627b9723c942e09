"""Expand a SentencePiece model with the most frequent Chinese characters it lacks (Ziya2: 7,400 added to
LLaMA-2's vocabulary).

  python -m jobs.expand_vocab --base llama2/tokenizer.model --input build/runs/pipeline/dedup \
      --output build/models/tokenizer_zh [--set tokenizer.expand.num_chars=7400]

Counts CJK characters of the input's `text` (pipeline output or JSONL; filter it to Chinese first, or pass
--lang zh to keep rows whose `lang` is zh), appends the N most frequent characters that are not single pieces
of the base model, and writes OUT/tokenizer.model, OUT/init_map.json (new id -> the base ids the character
used to split into) and OUT/expand_report.json. Old ids are unchanged. Settings: `tokenizer.expand`.
"""
import sys
from pathlib import Path


from dataflow.core.cli import dump, load_job_conf, main_guard, stage_argparser


def main(argv=None):
    ap = stage_argparser("expand_vocab", __doc__, input_help="the Chinese corpus: pipeline output or JSONL with `text`")
    ap.add_argument("--base", required=True, metavar="MODEL", help="base SentencePiece tokenizer.model (LLaMA-2's, or one from jobs.train_tokenizer)")
    ap.add_argument("--lang", default=None, help="keep only rows whose `lang` maps to this pipeline code (zh-cn, zh-tw, ... -> zh)")
    args = ap.parse_args(argv)
    cfg = load_job_conf(args)
    from pyspark.sql import functions as F

    from dataflow.core.config import section
    from dataflow.core.spark import get_session
    from dataflow.models.tokenizer import read_documents
    from dataflow.models.tokenizer.expand import expand

    if not Path(args.base).exists():
        raise FileNotFoundError(f"base model {args.base} does not exist")
    ecfg = section(section(cfg, "tokenizer"), "expand")
    spark = get_session(cfg, app_name="ziya2-expand-vocab", verbose=args.verbose)
    df, _ = read_documents(spark, args.input, allow_incomplete=args.allow_incomplete)
    if args.lang:
        lang = F.when(F.col("lang").startswith("zh-"), F.lit("zh")).otherwise(F.col("lang"))
        df = df.filter(lang == args.lang)
    rep = expand(spark, df, Path(args.base), Path(args.output), ecfg)
    print(dump(rep))
    return rep


if __name__ == "__main__":
    main_guard(main)
