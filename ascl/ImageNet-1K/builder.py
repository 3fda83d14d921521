"""Drop-in ``moco/builder.py`` with ASCL (the original's ``ImageNet-1K/builder.py``).

The code lives in the importable module ``ascl.imagenet_builder`` (a folder with a hyphen cannot be imported);
this file re-exports it so ``from builder import MoCo`` works when this folder is on ``sys.path``.
"""
from ascl.imagenet_builder import MoCo  # noqa: F401
