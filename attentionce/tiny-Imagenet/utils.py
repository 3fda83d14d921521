"""The original's ``tiny-Imagenet/utils.py`` (ImageFolder 6-view dataset): one code path in ``image/utils.py``."""
from attentionce.image.utils import get_pretrain_dataset, test_transform, train_transform  # noqa: F401
