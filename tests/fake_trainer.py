"""Stands for the trainer's library in ``fake_tasks``: a test checks that no generation process loads it."""
