"""Datasets by URI: frames and configs in storage, the data config, and uploads through the API."""
