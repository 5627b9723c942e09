"""Training data: tokenize documents, pack them into fixed-length rows, mix the three training stages."""
