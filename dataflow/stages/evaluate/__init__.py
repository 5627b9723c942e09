"""DE, data evaluation (Ziya2 §3.1): a seeded stratified 1% sample, automatic metrics over the output
and the sample, a review sheet sorted worst-first, the Clopper-Pearson gate on reviewer labels, and the
HTML/Markdown report with the Figure-2 funnel.

`stage.run(df, cfg)` is the stage transform: DE keeps every record (input == kept). `stage.evaluate(...)` writes the
evaluation products next to it: sample/, review.jsonl, review.csv, metrics.json, report.html, report.md.
`stage.gate(...)` reads a reviewed sheet back and decides.
"""
