"""The base of the package: the one-line error, files written whole, the label set and its grammar, the one list of
secrets and their redaction, the log."""
