"""The console tables of a chain and of the demo: in / kept / top rejection reasons per stage, and the same
per source type, read from each stage's stats.json."""
from __future__ import annotations

import json

from dataflow.core import fs


def read_json(uri: str) -> dict | None:
    try:
        return json.loads(fs.read_text(uri))
    except (OSError, ValueError):
        return None


def stats_rows(dirs: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """in / kept / top rejection reasons / docs/s for each finished stage directory, from its stats.json."""
    rows = [("stage", "in", "kept", "top rejection reasons", "docs/s")]
    for name, d in dirs:
        st = read_json(fs.join(str(d), "stats.json"))
        if st is None:
            continue
        top = sorted((st.get("rejected") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append((name, str(st.get("input", "-")), str(st.get("kept", "-")),
                     ", ".join(f"{r}={n}" for r, n in top) or "-", str(st.get("docs_per_s", "-"))))
    return rows


def type_funnel_rows(dirs: list[tuple[str, str]]) -> list[tuple[str, ...]]:
    """The funnel per source type: for each type, each finished stage's in / kept / top rejection reasons,
    from stats.json `by_type` (stages whose records carry no type are left out)."""
    rows = [("type", "stage", "in", "kept", "top rejection reasons")]
    per_type: dict[str, list[tuple[str, ...]]] = {}
    for name, d in dirs:
        st = read_json(fs.join(str(d), "stats.json"))
        for t, c in sorted(((st or {}).get("by_type") or {}).items()):
            top = sorted((c.get("rejected_by_reason") or {}).items(), key=lambda kv: -kv[1])[:3]
            per_type.setdefault(t, []).append((t, name, str(c.get("input", "-")), str(c.get("kept", "-")),
                                               ", ".join(f"{r}={n}" for r, n in top) or "-"))
    for t in sorted(per_type):
        rows.extend(per_type[t])
    return rows


def print_table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
