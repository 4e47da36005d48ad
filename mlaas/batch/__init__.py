"""Batch scoring of whole data sets in storage: streamed in chunks, one Parquet part of predictions per chunk."""
