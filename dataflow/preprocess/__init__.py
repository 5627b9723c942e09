"""DP (preprocessing): HTML to text, normalization, fastText language ID over ingested raw records."""
from .stage import OUT_SCHEMA, Preprocessor, doc_id, run

__all__ = ["run", "Preprocessor", "doc_id", "OUT_SCHEMA"]
