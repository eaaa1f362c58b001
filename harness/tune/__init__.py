"""`harness tune`: Optuna studies over any setting (harness.tune.space, .study, .results)."""
