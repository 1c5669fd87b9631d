"""The named choices of recipe fields that other modules check against too: schedulers, optimizers, trackers and
the validation figures that may choose a checkpoint."""

LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "cosine_with_min_lr",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "warmup_stable_decay",
)
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
    "lion_8bit",
    "paged_lion_8bit",
    "rmsprop",
    "schedule_free_adamw",
)
"""The optimizers a recipe may name (a subset of transformers' ``OptimizerNames``; a test checks it stays one)."""
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")
"""What ``train.report_to`` may name: ``none``, or the trackers a run reports to (``tracking``; each needs the
``track`` extra, ``hardware.TRACKER_MODULES``)."""
BEST_MODEL_METRICS = ("loss", "macro_f1")
"""The validation figures that may choose the checkpoint kept (``train.best_model_metric``)."""
