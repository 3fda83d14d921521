"""Find the backbone weights in a checkpoint of any of the five methods, this project's or the original repository's.

    from common.checkpoint_formats import extract_backbone_state
    found = extract_backbone_state(torch.load(path, map_location="cpu", weights_only=False))
    model = build_backbone(found.arch, **found.build_kwargs); model.load_state_dict(found.state_dict)

Three steps, each a small table so a new layout is one line:

1. **container** (:data:`CONTAINER_KEYS`): a plain state dict (AttentioNCE's ``.pth``, CACR's ``encoder.pth``, an
   exported backbone), or the first of ``state_dict`` (every training checkpoint, PaCo / CACR / ASCL / MoCo-MCL
   originals), ``model`` (CACR ``convert_to_deit``), ``net`` (MCL CIFAR / ImageNet), ``encoder``; an ``nn.Module``
   object is read through its ``state_dict()``. ``module.`` prefixes (DataParallel / DDP) are stripped.
2. **wrapper prefix** (:data:`BACKBONE_PREFIXES`, first one present wins): e.g. ``encoder_q.net.`` (ASCL),
   ``encoder_q.`` (MoCo-style CACR / PaCo / ASCL ImageNet), ``base_encoder.`` (CACR MoCo-v3), ``f.`` (AttentioNCE,
   an ``nn.Sequential`` of the ResNet's children, renamed to the children's names), ``module_list.<m>.`` and
   ``encoder_q_<m>.`` (MCL network ``m``); no prefix = a bare backbone. Everything outside the prefix (momentum /
   key encoder, queues, predictor, classifier of the wrapper) is dropped.
3. **architecture**: every registered ``common.backbones`` name is built once on the ``meta`` device (no memory, no
   init cost) and compared key-by-key and shape-by-shape. An architecture fits when all of its keys are present
   with the right shapes and every other key lies under a top-level module it does not have (``fc`` / MLP head /
   ``classifier`` / ``linear`` / ``g``), so ResNet-18 never "fits" a ResNet-34's weights. Architectures with
   identical weights (``vit_base`` = ``vit_b_16``) count once; a checkpoint's ``arch`` field breaks the remaining
   ties. Given an ``arch``, only that one is checked and a mismatch names the missing / mis-shaped keys.

Weight-free choices are taken from the checkpoint's args where the method defines them: ASCL keeps the ResNet
max-pool for STL-10 / Tiny-ImageNet (``build_kwargs={'maxpool': True}``). Split BatchNorm (ASCL) is read as plain
BatchNorm: its evaluation mode *is* ordinary BatchNorm with the running statistics, and its keys are BatchNorm's.
"""
from __future__ import annotations

import functools
import re
from typing import NamedTuple

import torch

from common.utils import UserError

# top-level keys holding the model's state dict, in the order they are tried
CONTAINER_KEYS = ("state_dict", "model", "net", "encoder", "model_state_dict")

# (prefix — '{m}' is the network index of a multi-network checkpoint — , what it is). First present wins: the
# longer ASCL prefix must precede the generic MoCo one.
BACKBONE_PREFIXES = (
    ("encoder_q.net.", "ASCL student encoder_q.net (projector, teacher encoder_k and queue dropped)"),
    ("encoder_q_{m}.", "MoCo-MCL query encoder of network {m} (other networks, key encoders and queues dropped)"),
    ("module_list.{m}.", "MCL network {m} of the *_n wrapper (other networks dropped)"),
    ("encoder_q.", "MoCo-style query encoder encoder_q (fc / MLP head, encoder_k, queues, PaCo linear dropped)"),
    ("base_encoder.", "CACR MoCo-v3 base_encoder (projector, predictor, momentum_encoder dropped)"),
    ("f.", "AttentioNCE encoder f (projection head g dropped)"),
    ("backbone.", "CACR ProjectedBackbone.backbone (fc head dropped)"),
    ("net.", "ASCL ModelBase.net / LinearHead (projector, classifier dropped)"),
    ("", "a bare backbone state dict"),
)

# AttentioNCE's encoder f is nn.Sequential(conv1, bn1, relu, layer1..4, avgpool) of a ResNet: index -> child name
RESNET_SEQUENTIAL_CHILDREN = ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "layer4", "avgpool")

# a checkpoint's own arch name -> the registered backbone it usually means (CIFAR-style ResNets of ASCL / AttentioNCE)
_ARCH_HINT_ALIASES = {"resnet18": ("resnet18", "cifar_resnet18"), "resnet34": ("resnet34", "cifar_resnet34"),
                      "resnet50": ("resnet50", "cifar_resnet50")}


class BackboneState(NamedTuple):
    """``state_dict``: loads into ``build_backbone(arch, num_classes=0, **build_kwargs)`` with ``strict=True``.
    ``source``: one line saying which format was recognised and what was dropped."""
    state_dict: dict
    arch: str
    source: str
    build_kwargs: dict = {}


# ------------------------------------------------------------------------------------------------------ containers
def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj) and \
        sum(torch.is_tensor(v) for v in obj.values()) >= max(1, len(obj) // 2)


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = list(obj)
        text = f"top-level keys {keys[:10]}{' ...' if len(keys) > 10 else ''}"
        inner = next((obj[k] for k in CONTAINER_KEYS if _is_state_dict(obj.get(k))), obj if _is_state_dict(obj)
                     else None)
        if inner is not None:
            text += f"; state keys e.g. {[k for k in inner if torch.is_tensor(inner[k])][:6]}"
        return text
    return f"a {type(obj).__name__}"


def find_state_dict(obj) -> tuple[dict, str]:
    """``(state_dict with 'module.' prefixes stripped, where it was found)``; ``UserError`` if there is none."""
    if isinstance(obj, torch.nn.Module):
        state, where = obj.state_dict(), f"the state of a pickled {type(obj).__name__}"
    elif _is_state_dict(obj):
        state, where = obj, "a plain state dict"
    else:
        state = where = None
        if isinstance(obj, dict):
            for key in CONTAINER_KEYS:
                if _is_state_dict(obj.get(key)):
                    state, where = obj[key], f"checkpoint['{key}']"
                    break
        if state is None:
            raise UserError(f"no model weights found: {_describe(obj)}. Accepted: a state dict, or a dict holding "
                            f"one under {' / '.join(repr(k) for k in CONTAINER_KEYS)}")
    stripped = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        while key.startswith("module."):
            key = key[len("module."):]
        stripped[key] = value
    return stripped, where


# -------------------------------------------------------------------------------------------------- wrapper prefix
def _remap_sequential_resnet(state: dict) -> dict | None:
    """AttentioNCE ``f.<i>.…`` / the original ASCL ``encoder_q.net.<i>.…`` keys → ResNet child names; ``None`` when
    the keys are not such a Sequential. A ResNet whose max-pool was kept (ASCL on STL-10 / Tiny-ImageNet) has
    weights at index 7 (layer4), where the pool-free one has its (weightless) average pool."""
    children = RESNET_SEQUENTIAL_CHILDREN
    if any(key.split(".", 1)[0] == "7" for key in state):
        children = children[:3] + ("maxpool",) + children[3:]
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if not head.isdigit() or int(head) >= len(children):
            return None
        out[f"{children[int(head)]}.{rest}"] = value
    return out


def strip_wrapper(state: dict, member: int = 0) -> tuple[dict, str]:
    """The backbone part of a method's model state (see :data:`BACKBONE_PREFIXES`) and its description."""
    for template, description in BACKBONE_PREFIXES:
        prefix = template.format(m=member)
        if prefix and not any(k.startswith(prefix) for k in state):
            if "{m}" in template and any(k.startswith(template.split("{m}")[0]) for k in state):
                found = sorted({k[len(template.split("{m}")[0]):].split(".")[0] for k in state
                                if k.startswith(template.split("{m}")[0])})
                raise UserError(f"this multi-network checkpoint has networks {', '.join(found)} "
                                f"('{template.split('{m}')[0]}<i>.'), not {member}; pick one with --member")
            continue
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if prefix in ("f.", "encoder_q.net."):
            inner = _remap_sequential_resnet(inner) or inner
        if not prefix:
            branch = _select_branch(inner, member)
            if branch is not None:
                return branch, (f"MCL multi-branch network: shared stem and branch {member} (top-level modules "
                                f"'<name>_{member}' renamed '<name>', other branches dropped)")
        return inner, description.format(m=member)
    raise AssertionError("the bare-backbone entry matches every state")


def _select_branch(state: dict, member: int) -> dict | None:
    """MCL's multi-branch network (N > 2, quirk 1: shared ``conv1`` / ``bn1`` / ``layer1``, then per branch i
    ``layer2_i``, ``layer3_i``, ``classifier_i``, ...): the shared modules plus branch ``member`` under the plain
    names, i.e. that branch's whole network; ``None`` when the top-level modules are not indexed so (no registered
    backbone has a top-level module named ``<name>_<digits>``)."""
    indexed = {}
    for key in state:
        match = re.fullmatch(r"(.+)_(\d+)", key.split(".", 1)[0])
        if match:
            indexed.setdefault(match.group(1), set()).add(int(match.group(2)))
    branches = set().union(*indexed.values()) if indexed else set()
    if len(branches) < 2:
        return None
    if member not in branches:
        raise UserError(f"this multi-branch checkpoint has branches {', '.join(map(str, sorted(branches)))} "
                        f"('<name>_<i>.' modules), not {member}; pick one with --member")
    out = {}
    for key, value in state.items():
        head, dot, rest = key.partition(".")
        match = re.fullmatch(r"(.+)_(\d+)", head)
        if match is None:
            out[key] = value
        elif int(match.group(2)) == member:
            out[f"{match.group(1)}{dot}{rest}"] = value
    return out


# ---------------------------------------------------------------------------------------------------- architecture
@functools.lru_cache(maxsize=None)
def _signature(name: str, kwargs: tuple) -> dict:
    from common.backbones import build_backbone
    with torch.device("meta"):
        model = build_backbone(name, num_classes=0, **dict(kwargs))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _candidate_kwargs(name: str, state: dict) -> list[dict]:
    if name.startswith("vit"):
        # the position embedding fixes the input size: (image_size / 16)² patches + the class token
        pos = state.get("encoder.pos_embedding")
        grid = round((pos.shape[1] - 1) ** 0.5) if pos is not None and pos.dim() == 3 else 14
        return [{}] if grid == 14 else [{"image_size": 16 * grid}]
    if name != "small_alexnet":
        return [{}]
    # the embedding width is the last block's Linear; the input size (32 CIFAR / 64 STL) fixes fc6's input
    last = max((k for k in state if re.fullmatch(r"blocks\.\d+\.0\.weight", k) and state[k].dim() == 2),
               key=lambda k: int(k.split(".")[1]), default=None)
    if last is None:
        return []
    return [{"feat_dim": int(state[last].shape[0]), "input_size": s} for s in (32, 64)]


def match_problems(state: dict, signature: dict) -> list[str]:
    """Why ``state`` is not exactly the backbone of ``signature`` (empty: it is, once foreign modules are dropped)."""
    missing = [k for k in signature if k not in state]
    shapes = [f"{k} {tuple(state[k].shape)} vs {signature[k]}" for k in signature
              if k in state and tuple(state[k].shape) != signature[k]]
    own_modules = {k.split(".")[0] for k in signature}
    extra = [k for k in state if k not in signature and k.split(".")[0] in own_modules]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
    if extra:
        problems.append(f"{len(extra)} keys the architecture does not have (e.g. {', '.join(extra[:3])})")
    return problems


def _hint_of(obj) -> str | None:
    if not isinstance(obj, dict):
        return None
    args = obj.get("args")
    args = args if isinstance(args, dict) else vars(args) if hasattr(args, "__dict__") else {}
    hint = obj.get("arch") or args.get("arch")
    return hint if isinstance(hint, str) else None


def _weight_free_kwargs(obj, source: str, arch: str) -> dict:
    """ASCL keeps the ResNet max-pool on STL-10 / Tiny-ImageNet (spec e); weights do not show it."""
    if not (source.startswith("ASCL") and arch.startswith("cifar_resnet") and isinstance(obj, dict)):
        return {}
    args = obj.get("args") if isinstance(obj.get("args"), dict) else {}
    return {"maxpool": True} if str(args.get("dataset", "")).lower() in ("stl10", "tinyimagenet") else {}


def _likely_first(names: list[str], state: dict) -> list[str]:
    """``names`` whose family fits the state's top-level modules, so a lookup builds a handful of networks and not
    all ~35 (ResNet-1202 alone takes seconds); :func:`infer_arch` falls back to every name when none of them fits.
    A speed-up only: the key-by-key comparison decides."""
    top = {k.split(".")[0] for k in state}
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("layer1.") and k.split(".")[1].isdigit()}
    depth = 6 * (max(blocks) + 1) + 2 if blocks else None

    def family(name: str) -> bool:
        if "blocks" in top or "conv_proj" in top or "features" in top or "block1" in top:
            return (name == "small_alexnet" and "blocks" in top) or (name.startswith("vit") and "conv_proj" in top) \
                or (name.startswith("hcgnet") and "features" in top) or (name.startswith("wrn") and "block1" in top)
        if name.endswith("_option_a"):
            return "layer4" not in top and name == f"resnet{depth}_option_a"
        if name in ("resnet32", "resnet56", "resnet110") or name.startswith("ShuffleNet"):
            return "layer4" not in top
        return "layer4" in top and not name.startswith(("vit", "hcgnet", "wrn", "small_alexnet"))
    return [n for n in names if family(n)]


def infer_arch(state: dict, arch: str | None = None, hint: str | None = None) -> tuple[str, dict]:
    """``(backbone name, build kwargs)`` whose weights ``state`` is; ``UserError`` listing candidates otherwise."""
    from common.backbones import list_backbones
    if arch and arch not in list_backbones():
        raise UserError(f"unknown --arch '{arch}'; known backbones: {', '.join(list_backbones())}")
    if not arch:
        likely = _likely_first(list_backbones(), state)
        if likely:
            try:
                return _infer_among(state, likely, None, hint)
            except UserError:
                pass  # an unforeseen layout: compare against every registered backbone
    return _infer_among(state, [arch] if arch else list_backbones(), arch, hint)


def _infer_among(state: dict, names: list[str], arch: str | None, hint: str | None) -> tuple[str, dict]:
    fits, near = [], []
    seen = {}
    for name in names:
        for kwargs in _candidate_kwargs(name, state):
            signature = _signature(name, tuple(sorted(kwargs.items())))
            problems = match_problems(state, signature)
            if problems:
                near.append((sum(k in state for k in signature) / max(len(signature), 1), name, problems))
                continue
            key = tuple(sorted(signature.items()))
            if key in seen:  # an alias of an architecture already found (vit_base = vit_b_16)
                continue
            seen[key] = name
            fits.append((name, kwargs))
    if arch and not fits:
        raise UserError(f"the weights are not a '{arch}' backbone: {'; '.join(near[0][2])}. "
                        "Drop --arch to infer it, or pass the architecture the checkpoint was trained with")
    if len(fits) > 1 and hint:
        preferred = [f for f in fits if f[0] in _ARCH_HINT_ALIASES.get(hint, (hint,))]
        fits = preferred or fits
    if len(fits) == 1:
        return fits[0]
    if not fits:
        near.sort(key=lambda t: -t[0])
        closest = "; ".join(f"{n} ({p[0]})" for _, n, p in near[:3])
        raise UserError(f"no registered backbone has exactly these {len(state)} weights (e.g. "
                        f"{', '.join(list(state)[:4])}); closest: {closest}. Pass --arch NAME if it is a known "
                        "architecture saved with other key names, or check that this is a backbone checkpoint")
    raise UserError(f"the weights fit several architectures: {', '.join(n for n, _ in fits)}; pass --arch NAME "
                    "to pick one")


def extract_backbone_state(obj, arch: str | None = None, member: int = 0) -> BackboneState:
    """The backbone weights of a checkpoint object (``torch.load`` result) of any of the five methods.

    ``arch``: the ``common.backbones`` name to check against (default: inferred). ``member``: the network of a
    multi-network (MCL) checkpoint. Returns a :class:`BackboneState` (unpacks as ``state_dict, arch, source,
    build_kwargs``). Anything unrecognised raises one ``UserError`` naming what was found and what is accepted.
    """
    full, where = find_state_dict(obj)
    state, description = strip_wrapper(full, member)
    try:
        name, kwargs = infer_arch(state, arch, _hint_of(obj))
    except UserError as e:
        if description.startswith("a bare") and full:
            accepted = ", ".join(repr(p.format(m="<i>")) for p, _ in BACKBONE_PREFIXES if p)
            raise UserError(f"{e}. Found {_describe(obj)}; accepted: a bare backbone state dict or one whose keys "
                            f"start with {accepted} (after 'module.')") from None
        raise UserError(f"{description} in {where}: {e}") from None
    signature = _signature(name, tuple(sorted(kwargs.items())))
    state = {k: state[k] for k in signature}
    kwargs = {**kwargs, **_weight_free_kwargs(obj, description, name)}
    dropped = len(full) - len(state)
    return BackboneState(state, name, f"{where}: {description}; {len(state)} backbone tensors kept, {dropped} "
                                      f"other tensors dropped", kwargs)


def torchvision_target(arch: str, kwargs: dict | None = None) -> str:
    """What a plain exported ``arch`` state dict loads into with ``strict=True`` (a sentence for users)."""
    import torchvision
    if hasattr(torchvision.models, arch) and not arch.startswith("vit"):
        return f"torchvision.models.{arch}() with model.fc = torch.nn.Identity() (i.e. every key but fc.*)"
    if arch in ("vit_b_16", "vit_base") and (kwargs or {}).get("image_size", 224) == 224:
        return "torchvision.models.vit_b_16() with model.heads = torch.nn.Identity() (i.e. every key but heads.*)"
    if arch.startswith("cifar_resnet"):
        tv = arch[len("cifar_"):]
        pool = "kept" if (kwargs or {}).get("maxpool") else "model.maxpool = torch.nn.Identity()"
        return (f"torchvision.models.{tv}() with model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False), "
                f"{pool}, model.fc = torch.nn.Identity(); or common.backbones.build_backbone('{arch}')")
    extra = "".join(f", {k}={v!r}" for k, v in (kwargs or {}).items())
    return f"common.backbones.build_backbone('{arch}'{extra}) (num_classes=0)"
