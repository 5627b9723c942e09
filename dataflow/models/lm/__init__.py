"""Language-model tooling for the AS stage: building KenLM's `lmplz`/`build_binary` from the sdist
(`build_tools`), CCNet's text normalisation (`normalize`) and SentencePiece + KenLM training (`train`)."""
