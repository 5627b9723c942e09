"""CD: content de-duplication (Ziya2 §3: URL, exact, SimHash; plus MinHash, book-level and CCNet lines).
`run(df, cfg) -> StageResult`; see docs/dedup.md."""
from dataflow.stages.dedup.stage import STEP_ORDER, run

__all__ = ["run", "STEP_ORDER"]
