"""What a dedup step declares (its module holds `STEP = Step(...)`; `stage.STEPS` lists them in order).

A step is `mark(df, cfg, ctx, **kw) -> (annotated, stats)` (cfg = the whole `dedup` section, ctx =
components.Context) over the records the earlier steps kept; it returns them with `_dup_of` (the
representative's id, null for kept) and `_detail`. Its configuration is `dedup.<name>`, of schema `spec`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dataflow.core.confschema import Spec


@dataclass(frozen=True)
class Step:
    name: str                  # `dedup.steps` value, reason `dedup:<name>`, section `dedup.<name>`
    mark: Callable
    spec: Spec
    summary: str
    reads_text: bool = False   # needs the full rows (the others work on the narrow fingerprint frame)
    verifies: bool = False     # gets the records' shingle sets for verifying candidate pairs
    adds: tuple[str, ...] = () # columns it adds to kept rows
