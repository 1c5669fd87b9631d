"""Training: what the trainers share, LoRA SFT, classification heads, TF-IDF, the trackers, ``inspect``."""
