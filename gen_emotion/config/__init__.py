"""The typed-config engine and what it builds: the recipe schema and its checks, the one table of tasks."""
