"""`make quality`: a labelled evaluation set built from packages, and per-stage precision and recall (QUALITY.md)."""
