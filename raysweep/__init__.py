"""raysweep: rank pretraining data recipes with tiny-learning-rate proxies, on Ray."""
