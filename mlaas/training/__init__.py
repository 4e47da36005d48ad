"""Retraining, evaluation, the promotion gate, and the scores and pictures both report."""
