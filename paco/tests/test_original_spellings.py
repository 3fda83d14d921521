"""The original's flag spellings with the fixed meaning (issue 16: the originals' commands verbatim)."""
from __future__ import annotations

import pytest

from paco.augmentations import train_transform
from paco.main_paco import parse_args
from paco.tests.helpers import TINY, run, run_dir

BOOL_FLAGS = ("mlp", "aug_plus", "cos", "normalize")


@pytest.mark.parametrize("variant", ["lt", "places", "imagenet"])
@pytest.mark.parametrize("spelling,value", [("True", True), ("False", False), ("true", True), ("false", False),
                                            (None, True)])
def test_type_bool_spellings_mean_what_they_say(variant, spelling, value):
    """The original's type=bool flags (quirk 8): '--normalize True' used to be refused; 'False' now means False."""
    for name in BOOL_FLAGS:
        flag = "--" + name.replace("_", "-")
        args = parse_args(variant, [flag] + ([spelling] if spelling else []))
        assert getattr(args, name) is value, (flag, spelling)


def test_no_forms_still_work_and_bad_values_are_refused(capsys):
    args = parse_args("lt", ["--no-mlp", "--no-cos", "--no-aug-plus", "--no-normalize"])
    assert (args.mlp, args.cos, args.aug_plus, args.normalize) == (False, False, False, False)
    for argv in (["--normalize", "maybe"], ["--no-normalize", "True"]):
        with pytest.raises(SystemExit):
            parse_args("lt", argv)
    assert "--normalize" in capsys.readouterr().err


@pytest.mark.parametrize("original,ours", [("sim", "sim_sim"), ("mocov2", "mocov2_mocov2"),
                                           ("regular", "regular_regular")])
def test_full_imagenet_aug_names(original, ours):
    """Full-ImageNet/paco_imagenet.py's --aug sim | mocov2 | regular (spec §d.3) select the same pairs."""
    args = parse_args("imagenet", ["--aug", original])
    assert args.aug == ours   # (the default run name carries --aug through its digest, common.engine)
    pair = train_transform(args.aug, "imagenet", "imagenet", 32)
    assert repr(pair) == repr(train_transform(ours, "imagenet", "imagenet", 32))
    with pytest.raises(SystemExit):  # the LT entry points never had these names
        parse_args("lt", ["--aug", original])


def test_normalize_true_runs(tmp_path):
    """The original's spelling end to end: one tiny epoch with '--normalize True --mlp True'."""
    run(["LT/paco_lt.py", "--dataset", "digits", "-a", "resnet32", "--feat_dim", "64", "--aug", "mocov2_mocov2",
         "--normalize", "True", "--mlp", "True", "--mark", "spelled", *TINY], tmp_path)
    assert (run_dir(tmp_path, "spelled") / "moco_ckpt.pth.tar").is_file()
