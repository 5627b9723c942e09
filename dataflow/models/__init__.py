"""Model training: language ID, the KenLM/SentencePiece scorers, the reference classifier, the tokenizer and its
expansion. The stages load what these train."""
