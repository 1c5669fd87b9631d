"""Where the data is and how it is read: ``--data`` sources, table formats, label lists, ``EmotionData`` and its
folds, the pod's download."""
