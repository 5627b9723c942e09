"""DP (preprocessing): HTML to text, normalization, fastText language ID over ingested raw records.
The stage is `stage.STAGE`."""
