"""The PaCo loss (spec §f): one softmax over C parametric class centres and all other samples.

`paco_loss` is the pure function; `PaCoLoss` is the module shell holding the class prior. The LT original
(`LT/losses.py`) adds the log class-frequency prior to the classifier logits (pass ``cls_num_list``); the
Full-ImageNet original (`Full-ImageNet/losses.py`) does not (``cls_num_list=None``). Nothing is gathered here:
only the queue carries other processes' keys (spec §i).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def log_class_prior(cls_num_list, dtype=torch.float32, device=None) -> torch.Tensor:
    """log(π_c + 1e-9) with π_c = n_c / Σ n. A class without training images gets log(1e-9) ≈ −20.7.

    cls_num_list: (C,) counts. Returns (C,).
    """
    counts = torch.as_tensor(cls_num_list, dtype=dtype, device=device).flatten()
    return torch.log(counts / counts.sum() + 1e-9)


def paco_loss(features: torch.Tensor, labels: torch.Tensor, sup_logits: torch.Tensor, queue_size: int,
              alpha: float, beta: float = 1.0, gamma: float = 1.0, temperature: float = 0.2,
              base_temperature: float | None = None, supt: float = 1.0, log_prior: torch.Tensor | None = None,
              num_anchors: int | None = None, smooth: float = 0.0, reduction: str = "mean",
              return_intermediates: bool = False):
    """PaCo loss as a pure function of tensors.

    Args:
        features: (N, d) with N = 2B + K: rows [q (anchors); k (other views); queue].
        labels: (N,) int64, [labels; labels; queue labels].
        sup_logits: (A, C) raw classifier outputs of the A anchors (no prior).
        queue_size: K; the anchor count defaults to B = (N − K) // 2 like the original.
        alpha, beta, gamma: weight of sample positives, of the class-centre positive, of the sample terms in
            the denominator (spec §f steps 4, 6).
        temperature, base_temperature: T and T_b (None → T); the loss is scaled by T / T_b.
        supt: divisor of the classifier logits (1 in every script).
        log_prior: (C,) log(π + 1e-9) added to ``sup_logits`` (LT variant) or None (Full variant).
        num_anchors: A; GPaCo uses every non-queue row (A = N − K).
        smooth: ε, label smoothing of the class-centre target β((1−ε)onehot + ε/(C−1)(1−onehot)) (GPaCo).
        reduction: 'mean' → scalar, 'none' → (A,) per-anchor losses.

    Returns the loss (and, with ``return_intermediates``, a dict of the (A, C + N) tensors named as in the
    golden README: anchor_dot_contrast, logits_max, pos_weights, denom_weights, log_prob, per_anchor_loss).

    The loss and its gradient come from :class:`_PaCoFused` (no (A, C + N) concatenation, masks or
    log-probabilities are materialised); the intermediates, when asked for, are recomputed densely and
    without gradient by :func:`paco_intermediates`, the line-by-line transcription of the original.
    """
    n = features.shape[0]
    anchors = (n - queue_size) // 2 if num_anchors is None else int(num_anchors)
    base_temperature = temperature if base_temperature is None else base_temperature
    labels = labels.reshape(-1)
    per_anchor = _PaCoFused.apply(features, sup_logits, labels, log_prior, anchors, float(alpha), float(beta),
                                  float(gamma), float(temperature), float(temperature / base_temperature),
                                  float(supt), float(smooth))
    loss = per_anchor.mean() if reduction == "mean" else per_anchor
    if not return_intermediates:
        return loss
    with torch.no_grad():
        inter = paco_intermediates(features, labels, sup_logits, anchors, alpha, beta, gamma, temperature,
                                   base_temperature, supt, log_prior, smooth)
    inter["per_anchor_loss"] = per_anchor
    return loss, inter


def paco_intermediates(features, labels, sup_logits, anchors: int, alpha: float, beta: float = 1.0,
                       gamma: float = 1.0, temperature: float = 0.2, base_temperature: float | None = None,
                       supt: float = 1.0, log_prior=None, smooth: float = 0.0) -> dict:
    """The original's dense (A, C + N) tensors, step by step (for inspection and the golden checks; the
    training path is :class:`_PaCoFused`). Same arguments as :func:`paco_loss` with ``anchors`` = A.

    Returns {anchor_dot_contrast (A, C+N), logits_max (A,), pos_weights, denom_weights, log_prob (A, C+N),
    per_anchor_loss (A,)}.
    """
    num_classes = sup_logits.shape[1]
    dtype, device = features.dtype, features.device
    base_temperature = temperature if base_temperature is None else base_temperature
    labels = labels.reshape(-1)
    anchor_labels = labels[:anchors]
    same_label = torch.eq(anchor_labels[:, None], labels[None, :]).to(dtype)
    # the self column j = i stays in the logits (and in their max); only the weights drop it (quirk §k.2)
    not_self = torch.ones_like(same_label)
    not_self[torch.arange(anchors, device=device), torch.arange(anchors, device=device)] = 0

    contrast = torch.matmul(features[:anchors], features.T) / temperature
    class_logits = sup_logits if log_prior is None else sup_logits + log_prior.to(sup_logits.dtype)
    anchor_dot_contrast = torch.cat((class_logits / supt, contrast), dim=1)
    logits_max = anchor_dot_contrast.max(dim=1, keepdim=True).values
    logits = anchor_dot_contrast - logits_max.detach()

    one_hot = F.one_hot(anchor_labels, num_classes).to(dtype)
    if smooth > 0:
        one_hot = (1 - smooth) * one_hot + smooth / (num_classes - 1) * (1 - one_hot)
    pos_weights = torch.cat((beta * one_hot, alpha * same_label * not_self), dim=1)
    denom_weights = torch.cat((torch.ones(anchors, num_classes, dtype=dtype, device=device),
                               gamma * not_self), dim=1)

    exp_logits = torch.exp(logits) * denom_weights
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True) + 1e-12)
    mean_log_prob_pos = (pos_weights * log_prob).sum(1) / pos_weights.sum(1)
    per_anchor = -(temperature / base_temperature) * mean_log_prob_pos
    return {"anchor_dot_contrast": anchor_dot_contrast, "logits_max": logits_max.squeeze(1),
            "pos_weights": pos_weights, "denom_weights": denom_weights, "log_prob": log_prob,
            "per_anchor_loss": per_anchor}


class _PaCoFused(torch.autograd.Function):
    """Per-anchor PaCo losses (A,) with a hand-written backward.

    With z = (sup_logits + prior) / supt (A, C), s = f_A fᵀ / T (A, N), m = the row max over [z, s] (self column
    included, no gradient), E = exp([z, s] − m) with the self column zeroed, D = Σ_C E + γ Σ_N E and the
    positive weights w (β·one-hot over C, α·same-label-not-self over N, W = Σ w):

        loss_i = −(T / T_b) · (Σ_j w_ij [z, s]_ij / W_i − m_i − log(D_i + 1e-12))

    which is the original's Σ w · log_prob / W with log_prob = [z, s] − m − log(D + 1e-12) expanded (Σ w / W = 1).
    The gradient w.r.t. [z, s] is −(T / T_b) · (w / W − [1, γ] · E / (D + 1e-12)); the forward pass builds it in
    place of E (R, A × N, and Rz, A × C) and the backward pass only scales rows and does the two GEMMs of s's
    gradient, the per-anchor upstream factor being folded into the (A, d) operands.
    """

    @staticmethod
    def forward(ctx, features, sup_logits, labels, log_prior, anchors, alpha, beta, gamma, temperature, scale,
                supt, smooth):
        # the class and sample logits share one softmax: one working dtype (≥ float32) whatever the autocast
        with torch.autocast(features.device.type, enabled=False):
            dtype = torch.promote_types(torch.promote_types(features.dtype, sup_logits.dtype), torch.float32)
            f = features.to(dtype)
            num_classes = sup_logits.shape[1]
            anchor_labels = labels[:anchors]

            s = torch.mm(f[:anchors] / temperature, f.t())                        # (A, N)
            z = sup_logits.to(dtype)
            if log_prior is not None:
                z = z + log_prior.to(dtype)
            if supt != 1:
                z = z / supt
            row_max = torch.maximum(s.amax(1), z.amax(1))                          # (A,)

            # same-label mask of the samples (self excluded), compared as floats: a vectorised float compare
            # is ~3x faster than the int64 one, and class ids below 2^24 (2^53) are exact in float32 (float64)
            label_dtype = dtype if num_classes < 2 ** 24 or dtype == torch.float64 else torch.float64
            positives = torch.empty_like(s, dtype=label_dtype)
            torch.eq(anchor_labels.to(label_dtype)[:, None], labels.to(label_dtype)[None, :], out=positives)
            positives.diagonal().zero_()
            positives = positives.to(dtype)
            pos_count = positives.sum(1)
            pos_sample_sum = torch.linalg.vecdot(positives, s)                     # Σ_j same_ij s_ij

            if smooth > 0:
                class_weights = torch.full_like(z, beta * (smooth / (num_classes - 1)))
                class_weights.scatter_(1, anchor_labels[:, None], beta * (1 - smooth))
                pos_class_sum = torch.linalg.vecdot(class_weights, z)
                class_weight_total = class_weights.sum(1)
            else:
                class_weights = None
                pos_class_sum = beta * z.gather(1, anchor_labels[:, None]).squeeze(1)
                class_weight_total = beta
            weight_total = class_weight_total + alpha * pos_count                  # W

            exp_samples = s.sub_(row_max[:, None]).exp_()                          # E over the samples, in place
            exp_samples.diagonal().zero_()                                         # the self term is not summed
            exp_classes = torch.exp(z - row_max[:, None])
            denominator = exp_classes.sum(1) + gamma * exp_samples.sum(1) + 1e-12
            per_anchor = -scale * ((pos_class_sum + alpha * pos_sample_sum) / weight_total - row_max
                                   - torch.log(denominator))

            # d loss_i / d[z, s]_ij divided by −(T / T_b): w / W − [1, γ] E / (D + 1e-12)
            grad_samples = exp_samples.mul_((-gamma / denominator)[:, None])
            grad_samples.addcmul_(positives, (alpha / weight_total)[:, None])
            grad_classes = exp_classes.mul_((-1.0 / denominator)[:, None])
            if class_weights is None:
                grad_classes.scatter_add_(1, anchor_labels[:, None], (beta / weight_total)[:, None])
            else:
                grad_classes.addcmul_(class_weights, (1.0 / weight_total)[:, None])
        ctx.save_for_backward(f, grad_samples, grad_classes)
        ctx.anchors, ctx.temperature, ctx.scale, ctx.supt = anchors, temperature, scale, supt
        ctx.dtypes = (features.dtype, sup_logits.dtype)
        return per_anchor.to(features.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        f, grad_samples, grad_classes = ctx.saved_tensors
        anchors = ctx.anchors
        feat_dtype, sup_dtype = ctx.dtypes
        coef = grad_out.to(f.dtype) * (-ctx.scale)                                # (A,)
        grad_features = grad_sup = None
        if ctx.needs_input_grad[0]:
            row = (coef / ctx.temperature)[:, None]
            # s = f_A fᵀ / T: the contrast columns get R_ᵀ (row ⊙ f_A), the anchor rows also (R f) ⊙ row
            grad_features = torch.mm(grad_samples.t(), f[:anchors] * row)
            grad_features[:anchors].addcmul_(torch.mm(grad_samples, f), row)
            grad_features = grad_features.to(feat_dtype)
        if ctx.needs_input_grad[1]:
            grad_sup = (grad_classes * (coef / ctx.supt)[:, None]).to(sup_dtype)
        return grad_features, grad_sup, None, None, None, None, None, None, None, None, None, None


class PaCoLoss(nn.Module):
    """PaCo loss module (spec §f). ``cls_num_list`` given → LT variant with the log prior (computed at
    construction and kept as a buffer, so it follows the module's device; fixes quirk §k.26); None → Full.

    forward(features (2B+K, d), labels (2B+K,), sup_logits (B, C)) → scalar loss.
    """

    def __init__(self, alpha: float, beta: float = 1.0, gamma: float = 1.0, supt: float = 1.0,
                 temperature: float = 0.2, base_temperature: float | None = None, K: int = 8192,
                 num_classes: int = 1000, cls_num_list=None):
        super().__init__()
        self.alpha, self.beta, self.gamma, self.supt = alpha, beta, gamma, supt
        self.temperature = temperature
        self.base_temperature = temperature if base_temperature is None else base_temperature
        self.K = K
        self.num_classes = num_classes
        if cls_num_list is not None:
            if len(cls_num_list) != num_classes:
                raise ValueError(f"cls_num_list has {len(cls_num_list)} entries, expected {num_classes}")
            self.register_buffer("log_prior", log_class_prior(cls_num_list), persistent=False)
        else:
            self.log_prior = None

    def forward(self, features, labels, sup_logits):
        return paco_loss(features, labels, sup_logits, self.K, self.alpha, self.beta, self.gamma,
                         self.temperature, self.base_temperature, self.supt, self.log_prior)


class CrossEntropyBaseline(nn.Module):
    """The supervised baseline (``--loss ce``): plain cross-entropy on the anchors' classifier logits, without the
    class prior and without any contrastive term. Same call signature as :class:`PaCoLoss` so the training loop,
    the network (momentum encoder and queue included) and the data stay exactly those of a PaCo run.

    forward(features (2B+K, d), labels (2B+K,), sup_logits (B, C)) → scalar loss.
    """

    def forward(self, features, labels, sup_logits):
        return F.cross_entropy(sup_logits, labels[: sup_logits.shape[0]])
