"""Safe rollouts: a candidate version in shadow or on a canary share of a model's traffic, compared with production."""
