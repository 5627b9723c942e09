"""What jobs/filter.py wires: `--list-rules` (every rule in application order, as a console table or as the
Markdown table of docs/filter.md with each rule's thresholds) and the RF transform with its audit examples."""
from __future__ import annotations

from typing import Mapping

# list-valued parameters (phrase lists, stop words) are too long for a table cell
_LONG_PARAMS = ("enabled", "phrases", "words", "stop_words", "end_chars", "bullets")


def list_rules(cfg: Mapping, markdown: bool = False) -> str:
    """cfg: the `filter` section."""
    from .rules import active_rules, all_rules
    from .rules.registry import rule_conf

    active = {r.name: r for r in active_rules(cfg)}
    if markdown:
        rows = ["| # | rule | level | languages | description | thresholds (conf) |", "|---:|---|---|---|---|---|"]
        for i, r in enumerate(all_rules(), 1):
            p = {k: v for k, v in rule_conf(cfg["rules"], r.name).items() if k not in _LONG_PARAMS}
            thr = ", ".join(f"{k}={v}" for k, v in p.items()).replace("|", "\\|") or "-"
            on = "" if r.name in active else " (disabled)"
            rows.append(f"| {i} | `{r.name}`{on} | {r.level} | {','.join(r.langs)} | {r.description} | {thr} |")
        return "\n".join(rows)
    rows = [f"{'#':>3}  {'rule':36} {'level':9} {'langs':7} {'on':3} description"]
    for i, r in enumerate(all_rules(), 1):
        langs = ",".join(active[r.name].langs if r.name in active else r.langs)
        rows.append(f"{i:>3}  {r.name:36} {r.level:9} {langs:7} {'yes' if r.name in active else 'no':3} {r.description}")
    return "\n".join(rows)


def run_with_examples(df, cfg: Mapping, out: str):
    """The RF transform plus its audit examples, written to `out`/examples (the stage's attempt directory,
    committed with the data); the example counts join the stage statistics."""
    from .filter import run, write_examples

    result = run(df, cfg)
    examples = write_examples(result.annotated, out, cfg)
    stats_fn = result.stats
    result.stats = lambda: {**(stats_fn() if callable(stats_fn) else stats_fn), "examples": examples}
    return result
