"""Ziya2 data factory: one PySpark transform per stage over Parquet documents (see DESIGN.md)."""
__version__ = "0.1.0"
