"""The ``gen-emotion`` command: its entry point, arguments, handlers and the recipe catalog."""
