"""Train a SentencePiece BPE tokenizer (LLaMA-2 settings: split_digits, byte_fallback) from a seeded
sample of pipeline output.

  python -m jobs.train_tokenizer --input build/runs/pipeline/dedup --output build/models/tokenizer \
      [--set tokenizer.train.vocab_size=8000]

Writes OUT/tokenizer.model, OUT/tokenizer.vocab, OUT/vocab_report.{json,md} and OUT/train_sentences.txt
(the sampled lines the trainer read). Settings: the `tokenizer.train` section of conf/pipeline.yaml.
"""
import sys
from pathlib import Path


from dataflow.core.cli import dump, load_job_conf, main_guard, stage_argparser


def main(argv=None):
    ap = stage_argparser("train_tokenizer", __doc__,
                         input_help="pipeline output (stage dirs / Parquet with `text`) or JSONL files with `text`")
    args = ap.parse_args(argv)
    cfg = load_job_conf(args)
    from dataflow.core.config import section
    from dataflow.core.spark import get_session
    from dataflow.models.tokenizer import read_documents
    from dataflow.models.tokenizer.train import train

    tcfg = section(section(cfg, "tokenizer"), "train")
    spark = get_session(cfg, app_name="ziya2-train-tokenizer", verbose=args.verbose)
    df, _ = read_documents(spark, args.input, allow_incomplete=args.allow_incomplete)
    rep = train(spark, df, Path(args.output), tcfg)
    print(dump({k: rep[k] for k in ("model", "vocab_size", "sample_docs", "languages")}))
    return rep


if __name__ == "__main__":
    main_guard(main)
