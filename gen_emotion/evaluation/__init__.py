"""Across runs: cross-validation, ensembles and the comparison report."""
