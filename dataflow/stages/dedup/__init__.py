"""CD: content de-duplication (Ziya2 §3: URL, exact, SimHash; plus MinHash, book-level and CCNet lines).
The stage is `stage.STAGE` (`stage.run(df, cfg, conf) -> StageResult`); each step declares itself in its
own module (`step.Step`), and `stage.STEP_TABLE` lists them in order. See docs/dedup.md."""
