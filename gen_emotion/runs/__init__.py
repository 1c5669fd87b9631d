"""One run: its folder's files, one writer per folder, a fold trained and predicted in isolated steps, ``run``."""
