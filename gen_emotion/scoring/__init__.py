"""Scores and the files they come from: macro-F1 and the per-label table, thresholds, a folder's typed figures,
prediction and submission files."""
