"""Build ImageNet-100 (or any class subset) by symlinking class folders (spec §b.5).

    python large_scale_shift_experiments/imagenet/scripts/create_imagenet_subset.py <full_imagenet> <subset> [-s list] [-f]
For each class id of the list (``n`` + 8 digits) and each split (train, val): <full>/<split>/<id> → <subset>/<split>/<id>.
"""
from __future__ import annotations

import argparse
import os
import re

from common.utils import HelpFormatter, UserError, run_main

HERE = os.path.dirname(os.path.abspath(__file__))
WNID = re.compile(r"^n\d{8}$")


def read_class_list(path):
    if not os.path.isfile(path):
        raise UserError(f"class list '{path}' does not exist; pass -s/--subset <file with one WordNet id per line>")
    with open(path) as f:
        ids = f.read().split()
    bad = [i for i in ids if not WNID.match(i)]
    if bad:
        raise UserError(f"'{path}' has entries that are not WordNet ids (n + 8 digits): {bad[:5]}")
    return ids


def create_subset(full, subset, class_ids, force=False, splits=("train", "val")):
    for split in splits:
        if not os.path.isdir(os.path.join(full, split)):
            raise UserError(f"'{os.path.join(full, split)}' does not exist; full_imagenet_path must hold "
                            f"train/ and val/ with one folder per class")
    pairs = [(os.path.abspath(os.path.join(full, split, cid)), os.path.join(subset, split, cid))
             for split in splits for cid in class_ids]
    # everything is checked before the first link, so a bad class list leaves no half-made subset behind
    for src, dst in pairs:
        if not os.path.isdir(src):
            raise UserError(f"class folder '{src}' is missing from the full dataset; remove it from the class "
                            "list or complete the dataset")
        if os.path.lexists(dst) and not force:
            raise UserError(f"'{dst}' already exists; use -f/--force to overwrite")
        if os.path.lexists(dst) and not os.path.islink(dst):
            raise UserError(f"'{dst}' is a real folder or file, not a link this script made; -f/--force only "
                            "replaces links: move it away or choose another subset_imagenet_path")
    for split in splits:
        os.makedirs(os.path.join(subset, split), exist_ok=True)
    for src, dst in pairs:
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(src, dst, target_is_directory=True)
    return len(pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Create an ImageNet subset by symlinking class folders", formatter_class=HelpFormatter)
    parser.add_argument("full_imagenet_path", help="ImageNet root with train/ and val/")
    parser.add_argument("subset_imagenet_path", help="where to create the subset")
    parser.add_argument("-s", "--subset", default=os.path.join(HERE, "imagenet100_classes.txt"),
                        help="file with the class ids (default: the ImageNet-100 list next to this script)")
    parser.add_argument("-f", "--force", action="store_true", help="replace existing symlinks (never real folders)")
    args = parser.parse_args(argv)
    ids = read_class_list(args.subset)
    made = create_subset(args.full_imagenet_path, args.subset_imagenet_path, ids, args.force)
    print(f"created {made} symlinks for {len(ids)} classes in {args.subset_imagenet_path}")


if __name__ == "__main__":
    run_main(main)
