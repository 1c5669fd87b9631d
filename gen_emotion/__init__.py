"""gen-emotion: instruction-tune language models to detect the emotions of tweets."""

from gen_emotion.labels import LABELS

__version__ = "0.1.0"
__all__ = ["LABELS", "__version__"]
