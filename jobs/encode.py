"""Tokenize documents and supervised examples into int32 ids with BOS/EOS (SentencePiece, one model load per
Python worker).

  python -m jobs.encode --input build/runs/pipeline/dedup --output build/runs/tokenized/pretrain \
      [--model build/models/tokenizer/tokenizer.model]
  python -m jobs.encode --input sft.jsonl --output build/runs/tokenized/sft

Input: pipeline output (Parquet documents) or JSONL. Supervised JSONL records carry `type` and either
`prompt` + `response` (loss only on the response) or `text`; corpus sources listed in
`tokenizer.encode.supervised_sources` (human-eval, champ) are split into prompt/response automatically.
A `text`/`prompt`/`response` that is not a string is rejected (malformed:type), never encoded as its JSON.
Output: OUT/data (id, source, type, input_ids list<int32>, loss_mask list<int8>, n_tokens), OUT/rejected
(with text, reason, detail), OUT/stats.json (tokens per source/type, tokenizer sha256), OUT/_SUCCESS.
Settings: the `tokenizer` section (`model`, `encode`) of conf/pipeline.yaml.
"""
from dataflow.core.cli import main_guard, run_job, stage_argparser


def main(argv=None):
    ap = stage_argparser("tokenize", __doc__,
                         input_help="pipeline output (stage dirs / Parquet documents) or JSONL files")
    ap.add_argument("--model", default=None, help="SentencePiece model (default: tokenizer.model in the conf)")
    args = ap.parse_args(argv)
    if args.model:
        args.overrides.append(f"tokenizer.model={args.model}")

    def body(spark, cfg):
        from dataflow.trainset.tokenize import run_stage

        return run_stage(spark, args.input, args.output, cfg["tokenizer"], partitions=args.partitions,
                         allow_incomplete=args.allow_incomplete)

    return run_job("tokenize", args, body, files=("tokenizer",))


if __name__ == "__main__":
    main_guard(main)
