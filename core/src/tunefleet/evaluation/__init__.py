"""Evaluation: the golden set's answers scored against the spec's thresholds."""
