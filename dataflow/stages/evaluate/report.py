"""The evaluation report: one self-contained HTML file (PNG plots inlined as base64) and a Markdown summary.

Everything it shows comes from `metrics.json` (written by the DE stage) and, once reviewers have labelled
the sheet, `gate.json`, so the report is re-rendered without Spark after `--labels`. The funnel (Ziya2
Figure 2) is read from each stage's own stats.json: the numbers are the stages' accounting, not a recount.
Stage directories are read and the report written through `dataflow.core.fs`, so both may be any URI.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dataflow.core import fs  # noqa: E402


# ---------------------------------------------------------------- stage statistics
def load_stage_stats(stage_dirs: Iterable[str | os.PathLike]) -> list[dict]:
    """stats.json of each finished stage directory, in the given order."""
    out = []
    for d in stage_dirs:
        p = fs.join(str(d), "stats.json")
        if fs.is_file(p):
            st = json.loads(fs.read_text(p))
            st["dir"] = fs.basename(str(d))
            st["dir_path"] = str(d)
            out.append(st)
    return out


def funnel(stage_stats: list[dict]) -> dict:
    """Figure 2: retained and removed per stage (and reason), in documents and characters."""
    if not stage_stats:
        return {"initial": {"docs": 0, "chars": 0}, "stages": []}
    first = stage_stats[0]
    init_docs = first.get("input") or 0
    init_chars = (first.get("chars") or {}).get("input") or 0
    rows = []
    for st in stage_stats:
        chars = st.get("chars") or {}
        rows.append({
            "stage": st.get("stage"), "dir": st.get("dir"), "input": st.get("input"), "kept": st.get("kept"),
            "rejected_total": st.get("rejected_total"), "rejected": dict(st.get("rejected") or {}),
            "chars_input": chars.get("input"), "chars_kept": chars.get("kept"),
            "chars_rejected": dict(chars.get("rejected") or {}),
            "docs_per_s": st.get("docs_per_s"), "wall_s": st.get("wall_s"),
            "retained_docs_share": (st.get("kept") or 0) / init_docs if init_docs else None,
            "retained_chars_share": (chars.get("kept") or 0) / init_chars if init_chars else None,
        })
    return {"initial": {"docs": init_docs, "chars": init_chars}, "stages": rows}


def find_extra(stats: Mapping | None, needle: str) -> dict:
    """The first dict in a stage's `extra` whose key contains `needle` (stages name them their own way)."""
    extra = (stats or {}).get("extra") or {}
    for key in (needle, needle + "s"):  # the stage's own name for it first (e.g. AS: cutoffs vs ccnet_cutoffs)
        if isinstance(extra.get(key), dict):
            return extra[key]
    for key in sorted(extra):
        if needle in key.lower() and isinstance(extra[key], dict):
            return extra[key]
    return {}


def cutoffs_by_lang(score_stats: Mapping | None) -> dict[str, list[float]]:
    """Perplexity bucket cutoffs per language from the score stage (list, or dict of named cutoffs)."""
    out = {}
    for lang, v in find_extra(score_stats, "cutoff").items():
        vals = v.values() if isinstance(v, dict) else (v if isinstance(v, (list, tuple)) else [v])
        nums = sorted(float(x) for x in vals if isinstance(x, (int, float)))
        if nums:
            out[str(lang)] = nums
    return out


# ---------------------------------------------------------------- plots
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_funnel(f: dict) -> bytes | None:
    stages = f["stages"]
    if not stages:
        return None
    labels = ["input"] + [s["stage"] for s in stages]
    docs = [1.0] + [s["retained_docs_share"] or 0 for s in stages]
    chars = [1.0] + [s["retained_chars_share"] or 0 for s in stages]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = range(len(labels))
    ax1.bar([i - 0.2 for i in x], [d * 100 for d in docs], 0.4, label="documents", color="#4c72b0")
    ax1.bar([i + 0.2 for i in x], [c * 100 for c in chars], 0.4, label="characters", color="#dd8452")
    for i, (d, c) in enumerate(zip(docs, chars)):
        ax1.text(i - 0.2, d * 100 + 1, f"{d:.0%}", ha="center", fontsize=7)
        ax1.text(i + 0.2, c * 100 + 1, f"{c:.0%}", ha="center", fontsize=7)
    ax1.set_xticks(list(x), labels, rotation=20)
    ax1.set_ylabel("% of the input retained")
    ax1.set_ylim(0, 112)
    ax1.set_title("Retained after each stage (Ziya2 Fig. 2)")
    ax1.legend(loc="lower left", fontsize=8)
    # removed share per stage:reason, largest first
    removed = []
    init_docs, init_chars = f["initial"]["docs"] or 1, f["initial"]["chars"] or 1
    for s in stages:
        for reason, n in s["rejected"].items():
            removed.append((f"{s['stage']}: {reason}", n / init_docs, (s["chars_rejected"].get(reason) or 0) / init_chars))
    removed.sort(key=lambda r: -r[1])
    removed = removed[:20]
    if removed:
        y = range(len(removed))
        ax2.barh([i - 0.2 for i in y], [r[1] * 100 for r in removed], 0.4, label="documents", color="#4c72b0")
        ax2.barh([i + 0.2 for i in y], [r[2] * 100 for r in removed], 0.4, label="characters", color="#dd8452")
        ax2.set_yticks(list(y), [r[0] for r in removed], fontsize=8)
        ax2.invert_yaxis()
        ax2.legend(fontsize=8)
    ax2.set_xlabel("% of the input removed")
    ax2.set_title("Removed per stage and reason (top 20)")
    return _png(fig)


def plot_counts(summary: Mapping) -> bytes | None:
    panels = [(data, title) for data, title in ((summary.get("by_lang"), "documents per language"),
                                                (summary.get("by_source_type"), "documents per source type")) if data]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (data, title) in zip(axes[0], panels):
        items = sorted(data.items(), key=lambda kv: -kv[1]["docs"])[:25]
        ax.barh(range(len(items)), [v["docs"] for _, v in items], color="#55a868")
        ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(title + " (final output, log scale)")
    return _png(fig)


def _hist_by_group(ax, hist: list[dict], per_decade: int, max_groups: int = 8):
    groups = {}
    for h in hist:
        groups.setdefault(h["group"], []).append((h["bin"], h["count"]))
    top = sorted(groups, key=lambda g: -sum(c for _, c in groups[g]))[:max_groups]
    for g in top:
        # empty bins are absent from the aggregate: put zeros back so a step does not bridge a gap
        counts = {round(b * per_decade): c for b, c in groups[g]}
        lo, hi = min(counts), max(counts)
        pts = [(i / per_decade, counts.get(i, 0)) for i in range(lo, hi + 2)]
        ax.step([10 ** b for b, _ in pts], [c for _, c in pts], where="post", label=f"{g} ({sum(counts.values())})")
    ax.set_xscale("log")
    return top


def plot_ppl(hist: list[dict], cutoffs: Mapping[str, list[float]], per_decade: int) -> bytes | None:
    if not hist:
        return None
    fig, ax = plt.subplots(figsize=(10, 4))
    top = _hist_by_group(ax, hist, per_decade)
    colors = {line.get_label().split(" ")[0]: line.get_color() for line in ax.get_lines()}
    for lang in top:
        for c in cutoffs.get(lang, []):
            ax.axvline(c, color=colors.get(lang, "k"), linestyle="--", linewidth=1)
    ax.set_xlabel("document perplexity (log scale); dashed: the score stage's bucket cutoffs")
    ax.set_ylabel("documents")
    ax.set_title("Perplexity by language (final output)")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_lengths(hist: list[dict], per_decade: int) -> bytes | None:
    if not hist:
        return None
    fig, ax = plt.subplots(figsize=(10, 4))
    _hist_by_group(ax, hist, per_decade)
    ax.set_xlabel("characters per document (log scale)")
    ax.set_ylabel("documents")
    ax.set_title("Length by language (final output)")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_bars(data: Mapping[str, int], title: str, xlabel: str, color: str) -> bytes | None:
    if not data:
        return None
    items = sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))[:30]
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(items) + 1.2))
    ax.barh(range(len(items)), [v for _, v in items], color=color)
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=8)
    ax.invert_yaxis()
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v}", va="center", fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def plot_clusters(dist: Mapping[str, int]) -> bytes | None:
    if not dist:
        return None
    pts = sorted((int(k), v) for k, v in dist.items())
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#8172b3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cluster size (documents, the kept one included)")
    ax.set_ylabel("clusters")
    ax.set_title("Duplicate-cluster sizes (dedup stage)")
    return _png(fig)


def make_plots(m: Mapping) -> dict[str, bytes]:
    """Every plot of the report. Labels come from outside (stage folder names, reasons, languages, rule names):
    matplotlib's mathtext is off, so a `$` in a name is drawn as a `$`, never parsed (a LaTeX-like stage name
    used to kill the report)."""
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        return _make_plots(m)


def _make_plots(m: Mapping) -> dict[str, bytes]:
    score = next((s for s in m.get("stage_stats", []) if s.get("stage") == "score"), None)
    rule_hits = dict(m.get("rule_hits") or {})
    per_decade = int(m["hist"].get("per_decade", 10))
    plots = {
        "funnel": plot_funnel(m["funnel"]),
        "counts": plot_counts(m["output"]),
        "perplexity": plot_ppl(m["hist"].get("ppl") or [], cutoffs_by_lang(score), per_decade),
        "lengths": plot_lengths(m["hist"].get("chars") or [], per_decade),
        "rule_hits": plot_bars(rule_hits, "Rule hits (filter stage)", "documents", "#c44e52"),
        "dup_clusters": plot_clusters(m.get("dup_cluster_sizes") or {}),
    }
    return {k: v for k, v in plots.items() if v}


# ---------------------------------------------------------------- rendering
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _top(d: Mapping[str, int], k: int = 3) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(d.items(), key=lambda kv: -kv[1])[:k]) or "-"


def _sheet_rows(sheet: Mapping, sampled) -> str:
    if sheet.get("rows") is None:
        return "-"
    return f"{_fmt(sheet['rows'])} / {_fmt(sampled)} ({_fmt(sheet.get('max_rows'))})"


def tables(m: Mapping, gate: Mapping | None) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) for both renderers."""
    out = []
    f = m["funnel"]
    rows = [["input", _fmt(f["initial"]["docs"]), "", "", _fmt(f["initial"]["chars"]), "100%", "100%", "", ""]]
    for s in f["stages"]:
        rows.append([s["stage"], _fmt(s["input"]), _fmt(s["kept"]), _fmt(s["rejected_total"]), _fmt(s["chars_kept"]),
                     f"{s['retained_docs_share']:.1%}" if s["retained_docs_share"] is not None else "-",
                     f"{s['retained_chars_share']:.1%}" if s["retained_chars_share"] is not None else "-",
                     _top(s["rejected"]), _fmt(s["docs_per_s"])])
    out.append(("Funnel (from each stage's stats.json)",
                ["stage", "in", "kept", "rejected", "chars kept", "docs retained", "chars retained",
                 "top rejection reasons", "docs/s"], rows))
    dist_rows = []
    for name in ("output", "sample"):
        for metric, d in (m[name].get("distributions") or {}).items():
            dist_rows.append([name, metric] + [_fmt(d.get(k)) for k in ("mean", "p5", "p25", "p50", "p75", "p95")])
    out.append(("Automatic metrics: whole output vs. the review sample", ["set", "metric", "mean", "p5", "p25", "p50",
                                                                           "p75", "p95"], dist_rows))
    s = m["sample"]
    nd = m.get("near_dups") or {}
    out.append(("Sample and estimates", ["quantity", "value"], [
        ["documents in the output", _fmt(m["output"]["docs"])],
        ["sampled (share / min per stratum)", f"{_fmt(s['docs'])} ({_fmt(m['sampling']['by_share'])} / "
                                              f"{_fmt(m['sampling']['by_min_per_stratum'])})"],
        ["strata", _fmt(m["sampling"]["strata"])],
        ["review sheet rows / sampled (review.max_rows)", _sheet_rows(m.get("sheet") or {}, s["docs"])],
        ["lexicon hit rate (output / sample)", f"{m['output']['lexicon_hit_rate']:.3%} / {s['lexicon_hit_rate']:.3%}"],
        ["near-duplicate pairs inside the sample", _fmt(nd.get("pairs_in_sample"))],
        ["sample docs with a near-duplicate in the sample", _fmt(nd.get("docs_with_partner"))],
        ["estimated near-duplicate pairs left in the output", _fmt(nd.get("estimated_pairs_in_output"))],
    ]))
    removals = m.get("removals") or []
    if removals:
        out.append((f"CD removals and the record each was checked against (sample of {len(removals)})",
                    ["removed", "reason", "dup_of", "measure", "similarity", "threshold", "passed", "removed text",
                     "dup_of text"],
                    [[r["id"], r["reason"], r["dup_of"], r["measure"], _fmt(r["similarity"]), _fmt(r["threshold"]),
                      {True: "yes", False: "NO", None: "-"}[r["passed"]], r["text"], r["dup_of_text"]]
                     for r in removals]))
    if gate:
        rows = [["reviewed / unreviewed", f"{gate['reviewed']} / {gate['unreviewed']}"],
                ["unqualified", _fmt(gate["unqualified"])],
                ["unqualified rate (point)", "-" if gate["rate"] is None else f"{gate['rate']:.4%}"],
                [f"Clopper-Pearson {gate['confidence']:.0%}", "-" if gate["upper"] is None else
                 f"[{gate['lower']:.4%}, {gate['upper']:.4%}]"],
                ["gated on / threshold", f"{gate['gate_on']} < {gate['threshold']:.4%}"],
                ["reviews needed at zero failures", _fmt(gate["reviews_needed_at_zero_failures"])],
                ["decision", gate["message"]]]
        for key, counts in gate["unqualified_by"].items():
            if counts:
                rows.append([f"unqualified by {key}", _top(counts, 10)])
        out.append(("Review gate", ["quantity", "value"], rows))
    return out


def render_html(m: Mapping, plots: Mapping[str, bytes], gate: Mapping | None) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Data evaluation report</title><style>",
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             ".pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}",
             "</style></head><body><h1>Data evaluation report</h1>",
             f"<p>Run: <code>{html.escape(str(m.get('run_dir', '')))}</code>; configuration hash "
             f"<code>{html.escape(str(m.get('config_hash', '')))}</code>; seed {html.escape(str(m['sampling']['seed']))}, "
             f"share {m['sampling']['share']:.2%}.</p>"]
    if gate:
        cls = "pass" if gate["passed"] else "fail"
        parts.append(f"<p class='{cls}'>{html.escape(gate['message'])}</p>")
    else:
        parts.append("<p>Review gate: not run yet. Fill <code>verdict</code> in <code>review.csv</code> "
                     "(or review.jsonl) and rerun with <code>--labels</code>.</p>")
    for title, header, rows in tables(m, gate):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for r in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
        parts.append("</table>")
    for name, png in plots.items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>"
                     f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def md_text(value) -> str:
    """A value as Markdown text that renders as itself: no HTML (a viewer renders raw tags in Markdown), no
    table break, one line."""
    return (html.escape(str(value), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " "))


def render_markdown(m: Mapping, plot_names: Iterable[str], gate: Mapping | None) -> str:
    lines = ["# Data evaluation summary", ""]
    lines.append(md_text(gate["message"]) if gate else
                 "Review gate: not run yet (fill `verdict` in review.csv, rerun with `--labels`).")
    lines.append("")
    for title, header, rows in tables(m, gate):
        lines += [f"## {md_text(title)}", "", "| " + " | ".join(md_text(h) for h in header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
        lines.append("")
    for name in plot_names:
        lines.append(f"![{name}](plots/{name}.png)")
    return "\n".join(lines) + "\n"


def write_report(m: Mapping, out_dir: str | os.PathLike, gate: Mapping | None = None) -> dict:
    """report.html, report.md and plots/*.png in `out_dir` (any URI)."""
    out_dir = str(out_dir)
    plots = make_plots(m)
    for name, png in plots.items():
        fs.write_bytes(fs.join(out_dir, "plots", f"{name}.png"), png)
    html_uri, md_uri = fs.join(out_dir, "report.html"), fs.join(out_dir, "report.md")
    fs.write_text(html_uri, render_html(m, plots, gate))
    fs.write_text(md_uri, render_markdown(m, plots, gate))
    return {"html": html_uri, "markdown": md_uri, "plots": sorted(plots)}
