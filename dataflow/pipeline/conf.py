"""The configuration of the data factory (conf/pipeline.yaml): the schema assembled from the parts that
declare their own sections, and `load_conf`.

Nothing here says what a key means: each section's spec lives beside the code it configures (the stages'
`Stage.spec`, their rules and dedup steps, `core.spark.SPEC`, `ingest.sources.SPEC`, `core.recipes`,
`trainset.tokenize.SPEC`, `trainset.pack.SPEC`). The `pipeline` section, which configures the chain itself,
is declared here. `load_conf` checks the whole file, `--set` overrides included, on the driver before any
Spark work (`core.confschema.ConfigError`: one line per mistake).
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from dataflow.core import spark
from dataflow.core.config import DEFAULT_CONF, load_with_spec
from dataflow.core.config import missing_files as _missing_files
from dataflow.core.config import require_files as _require_files
from dataflow.core.confschema import Bool, List, Map, Scalar, Section, Str, optional_section
from dataflow.core.recipes import recipes_spec
from dataflow.ingest import sources
from dataflow.stages import table
from dataflow.stages.dedup.stage import STEP_ORDER
from dataflow.trainset import pack, tokenize

RUNNERS = ["session", "python", "spark-submit"]


def pipeline_section() -> Section:
    """The `pipeline` section: which stages of the table the chain runs, how, and the cluster lines."""
    return optional_section({
        "stages": List(Str(table.names()), unique=True, min_len=1, nullable=True),
        "runner": Str(RUNNERS),
        "fuse": Bool(),
        "spark_submit": Str(non_empty=True),
        "cluster": optional_section({   # --print-submit (dataflow/pipeline/submit.py); paths stay as written
            "master": Str(non_empty=True), "deploy_mode": Str(["client", "cluster"]), "client_stages": List(Str()),
            "py_files": Str(non_empty=True), "archives": List(Str(non_empty=True)),
            "python": Str(non_empty=True, nullable=True), "driver_python": Str(non_empty=True, nullable=True),
            "conf": Map(Scalar, nullable=True), "model_suffixes": List(Str(non_empty=True)),
            "model_dirs": List(Str(non_empty=True)), "models_dist": Str(non_empty=True),
            "zip_python": Str(non_empty=True), "skip_keys": List(Str(non_empty=True)),
        }, nullable=True),
    })


def pipeline_spec() -> Section:
    """The whole conf/pipeline.yaml, built on call from the stage table as it is now."""
    stage_specs = {s.section: s.spec for s in table.stages() if s.section and s.spec is not None}
    required = [s.section for s in table.stages() if s.section and s.spec is not None
                and getattr(s.spec, "required", None)]
    return Section({
        "spark": spark.SPEC, **stage_specs, "tokenizer": tokenize.SPEC, "pack": pack.SPEC,
        "pipeline": pipeline_section(), "sources": sources.SPEC, "recipes": recipes_spec(STEP_ORDER),
    }, required=("spark", *required, "tokenizer", "pack"))


def load_conf(path: str | os.PathLike | None = None, overrides: Iterable[str] = (), *, validate: bool = True) -> dict:
    """Load conf/pipeline.yaml (or `path`), apply dotted overrides, resolve paths and check the result
    against the assembled schema (ConfigError names every wrong key). Nothing here starts Spark."""
    return load_with_spec(pipeline_spec(), str(path) if path else str(DEFAULT_CONF), overrides, validate=validate)


def missing_files(cfg: Mapping, sections: Iterable[str]) -> list[str]:
    """'<key> = <path>' for every configured File of these sections that does not exist."""
    return _missing_files(pipeline_spec(), cfg, sections)


def require_files(cfg: Mapping, sections: Iterable[str]) -> None:
    """Raise FileNotFoundError naming each missing model/lexicon file of these sections."""
    _require_files(pipeline_spec(), cfg, sections)
