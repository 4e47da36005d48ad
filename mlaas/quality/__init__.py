"""Ground truth and live quality: outcomes by row id, realized and estimated metrics, quality monitors."""
