"""gen-emotion: instruction-tune language models to detect the emotions of tweets.

In a notebook or a script: ``EmotionModel.load(run_dir).predict(texts)`` (``gen_emotion.serving.notebook``), and
``score(y_true, y_pred)`` for macro-F1, micro-F1, Jaccard and the per-label table (``gen_emotion.scoring.metrics``).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["LABELS", "EmotionModel", "TextPredictions", "score", "__version__"]


def __getattr__(name: str) -> Any:
    """The API's parts, imported on first use (``import gen_emotion`` stays light: the command's entry point,
    ``gen_emotion.cli.console``, must be running before anything slow is imported)."""
    if name == "LABELS":
        from gen_emotion.core.labels import LABELS

        return LABELS
    if name in ("EmotionModel", "TextPredictions"):
        from gen_emotion.serving import notebook

        return getattr(notebook, name)
    if name == "score":
        from gen_emotion.scoring.metrics import score

        return score
    raise AttributeError(f"module 'gen_emotion' has no attribute {name!r}")
