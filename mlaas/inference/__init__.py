"""Synchronous inference: payload checks, model cache, compiled predictors, the serving hot path."""
