"""The document record (DESIGN §3). Later stages only add columns; they never drop these."""
from __future__ import annotations

import pyarrow as pa

DOC_FIELDS = [
    ("id", pa.string()),          # stable: xxh3-128 of source + url + record offset
    ("source", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("lang_score", pa.float32()),
    ("meta", pa.map_(pa.string(), pa.string())),
    ("source_type", pa.string()), # web, code, paper, qa, wiki, book, supervised (dataflow/core/recipes.py); never null after DP
]
DOC_ARROW_SCHEMA = pa.schema(DOC_FIELDS)
# the columns every stage input must have; `source_type` may be missing from an input written before it
# existed: `recipes.with_source_type` fills it with `sources.default_type`
OPTIONAL_DOC_COLUMNS = ("source_type",)
DOC_COLUMNS = [name for name, _ in DOC_FIELDS if name not in OPTIONAL_DOC_COLUMNS]

# the two columns every rejected row carries on top of its stage's schema
REJECT_FIELDS = [("reason", pa.string()), ("detail", pa.string())]

# (without the optional source_type: rows built from 7-tuples read as before)
DOC_DDL = "id string, source string, url string, text string, lang string, lang_score float, meta map<string,string>"


def spark_schema(arrow_schema: pa.Schema):
    """pyarrow schema -> Spark StructType (for mapInArrow output schemas)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def with_reject_fields(schema: pa.Schema) -> pa.Schema:
    for name, typ in REJECT_FIELDS:
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    return schema


def require_columns(df, columns, stage: str) -> None:
    """A clear error, naming the stage and the columns, instead of a crash halfway through a shard."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{stage}: input is missing column(s) {missing}; it has {df.columns}")
