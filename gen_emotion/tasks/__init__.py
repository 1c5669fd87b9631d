"""The tasks (``generate``, ``classify``, ``tfidf``): what every task is, the registry, each task's fit, predict and
load."""
