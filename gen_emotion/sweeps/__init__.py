"""Searching a recipe's settings: the space file, the Optuna study, each trial a cv or run folder, the results."""
