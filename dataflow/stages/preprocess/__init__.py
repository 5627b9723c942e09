"""DP (preprocessing): HTML to text, normalization, fastText language ID over ingested raw records."""
from dataflow.stages.preprocess.stage import OUT_SCHEMA, Preprocessor, doc_id, run, run_files

__all__ = ["run", "run_files", "Preprocessor", "doc_id", "OUT_SCHEMA"]
