"""What jobs/filter.py wires: `--list-rules` (every rule in application order, as a console table or as the
Markdown table of docs/filter.md with each rule's thresholds) and the RF transform with its audit examples."""
from __future__ import annotations

from typing import Mapping

def list_rules(cfg: Mapping, markdown: bool = False) -> str:
    """cfg: the `filter` section (the table lives with the rules: rules.registry.list_rules)."""
    from dataflow.stages.filter.rules.registry import list_rules as table

    return table(cfg, markdown)


def run_with_examples(df, cfg: Mapping, out: str, conf: Mapping | None = None):
    """The RF transform plus its audit examples, written to `out`/examples (the stage's attempt directory,
    committed with the data); the example counts join the stage statistics. `conf`: the root configuration
    (its `recipes` choose each source type's rules; filter.run)."""
    from dataflow.stages.filter.stage import run, write_examples

    result = run(df, cfg, conf)
    examples = write_examples(result.annotated, out, cfg)
    stats_fn = result.stats
    result.stats = lambda: {**(stats_fn() if callable(stats_fn) else stats_fn), "examples": examples}
    return result
