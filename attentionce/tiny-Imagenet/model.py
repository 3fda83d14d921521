"""The original's ``tiny-Imagenet/model.py`` is byte-identical to ``image/model.py``; this re-exports it."""
from attentionce.image.model import Model  # noqa: F401
