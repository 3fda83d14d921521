# entry-point + loop code of the five methods, and the run infrastructure of common/
git ls-files '*.py' | grep -E '^(cacr|ascl|paco|mcl|attentionce)/' | grep -vE '/tests/|golden_checks|loss|builder|model|vits|augment|dataloader|utils|/data/|__init__|encoder|resnet|convert|create_imagenet' | xargs wc -l | tail -1
git ls-files '*.py' | grep -E '^(cacr|ascl|paco|mcl|attentionce)/' | grep -vE '/tests/|golden_checks|loss|builder|model|vits|augment|dataloader|utils|/data/|__init__|encoder|resnet|convert|create_imagenet' | wc -l
ls common/engine.py common/training.py common/checkpoint.py common/logger.py 2>/dev/null | xargs wc -l | tail -1
