"""The top: the assembled configuration, a stage's command line, the chain, the cluster lines and the demo."""
