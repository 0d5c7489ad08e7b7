"""A linear expression probe: a multinomial logistic regression on frozen image features, fitted in closed form
(L-BFGS, scikit-learn) instead of by SGD, and stored in the model as an ordinary layer.

Why (docs/demo_design.md, "fourth pass"): on the demo's real photos, the frozen ImageNet EfficientNet-Lite0
stride-8 and stride-16 maps pooled to 4 × 4 cells separate smiling from neutral faces of unseen people at 0.985
with a logistic regression, while every fine-tuned expression head reached 0.88–0.93; augmentation, the AU task
and the SGD head's few epochs each cost accuracy. Fitting the classifier on fixed features apart from the
representation is "decoupled classifier re-training" (Kang et al., *Decoupling Representation and Classifier for
Long-Tailed Recognition*, ICLR 2020); here the representation is not trained at all, so the probe is fitted once,
before the AU side trains.

The probe is :class:`LinearProbe` (standardise, then linear) inside :class:`aufer.models.joint.JointNet`
(``expr_probe=True``); :func:`fit_expression_probe` fits it on a training set of expression clips, which
:func:`aufer.engine.runner.fit` calls before the first epoch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

__all__ = ["LinearProbe", "fit_logistic", "probe_features", "fit_expression_probe", "MISSING_CLASS_LOGIT"]

#: logit of a class with no training sample (its probability is then ~1e-13 against a logit of 0)
MISSING_CLASS_LOGIT = -30.0


class LinearProbe(nn.Module):
    """``logits = W · (x − mean) / scale + b`` on features ``(N, D)`` → ``(N, E)``. No parameter takes gradients:
    the values come from :func:`fit_logistic`. ``fitted`` (a saved buffer) says whether they have been set; an
    unfitted probe gives zero logits (uniform probabilities).

    Args:
        in_dim: D, feature size.
        n_classes: E, number of classes.
    """

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.linear.requires_grad_(False)
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        self.register_buffer("fitted", torch.zeros(()))  # 1.0 once fitted (a float, so that EMA copies and fp16 keep it)

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted > 0.5)

    def set(self, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        """Install a fitted classifier: ``weight`` ``(E, D)``, ``bias`` ``(E,)`` on features standardised by
        ``mean``, ``scale`` ``(D,)``.

        Raises:
            ValueError: shapes that do not match the probe.
        """
        e, d = self.linear.weight.shape
        if weight.shape != (e, d) or bias.shape != (e,) or mean.shape != (d,) or scale.shape != (d,):
            raise ValueError(f"probe of {d} features and {e} classes: got weight {weight.shape}, bias {bias.shape}, "
                             f"mean {mean.shape}, scale {scale.shape}")
        with torch.no_grad():
            for t, v in ((self.linear.weight, weight), (self.linear.bias, bias), (self.mean, mean), (self.scale, scale)):
                t.copy_(torch.as_tensor(np.asarray(v), dtype=t.dtype))
            self.fitted.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` → ``(N, E)`` logits."""
        return self.linear((x - self.mean) / self.scale)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, sample_weight: np.ndarray | None = None,
                 max_iter: int = 3000) -> dict:
    """Multinomial logistic regression with an L2 penalty (scikit-learn ``LogisticRegression``, L-BFGS) on
    standardised features.

    Args:
        x: features ``(N, D)``; y: class indices ``(N,)`` in ``[0, n_classes)``.
        c: inverse penalty strength (scikit-learn's ``C``; smaller = stronger penalty).
        sample_weight: per-sample weights ``(N,)`` (default 1).

    Returns:
        ``{"weight": (E, D), "bias": (E,), "mean": (D,), "scale": (D,), "classes_seen": [...], "train_accuracy"}``.
        A class without a training sample gets weight 0 and bias :data:`MISSING_CLASS_LOGIT`.

    Raises:
        ValueError: fewer than two classes among ``y``, or labels outside ``[0, n_classes)``.
    """
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}); got {y.min()}..{y.max()}")
    seen = np.unique(y)
    if len(seen) < 2:
        raise ValueError(f"a probe needs training samples of at least 2 classes; got {len(seen)}")
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale < 1e-8] = 1.0  # a constant feature (a dead channel): left unscaled, as scikit-learn's StandardScaler does
    z = (x - mean) / scale
    clf = LogisticRegression(C=c, max_iter=max_iter).fit(z, y, sample_weight=sample_weight)
    weight = np.zeros((n_classes, x.shape[1]))
    bias = np.full(n_classes, MISSING_CLASS_LOGIT)
    coef, icpt = clf.coef_, clf.intercept_
    if len(seen) == 2:  # scikit-learn's binary case: one row for class seen[1] against seen[0]
        coef, icpt = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    weight[seen], bias[seen] = coef, icpt
    acc = float((clf.predict(z) == y).mean())
    return {"weight": weight, "bias": bias, "mean": mean, "scale": scale, "classes_seen": seen.tolist(),
            "train_accuracy": acc}


@torch.no_grad()
def probe_features(model: nn.Module, loader, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """The probe's input features of every clip of an evaluation loader: ``model.probe_features`` of the
    preprocessed crops (the temporal mean over a clip's frames).

    Returns:
        ``{"x": (N, D) float32, "expr": (N,) labels (−1 unknown), "index": (N,) dataset indices}``.
    """
    model.eval()
    xs, ys, idx = [], [], []
    for b in loader:
        x = model.preprocess(b["crops"].to(device))
        xs.append(model.probe_features(x).float().cpu().numpy())
        ys.append(b["expr"].numpy())
        idx.append(b["index"].numpy())
    return {"x": np.concatenate(xs), "expr": np.concatenate(ys), "index": np.concatenate(idx)}


def source_balanced_weights(sources: Sequence[str]) -> np.ndarray:
    """Per-sample weights ``(N,)`` that give each source (e.g. ``real`` / ``synthetic``) the same total weight,
    with mean weight 1: a few real photos then count as much as many synthetic stills."""
    s = np.asarray(sources, dtype=object)
    names, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    return (len(s) / (len(names) * counts))[inv]


def fit_expression_probe(model: nn.Module, loader, *, c: float = 3e-4, balance: str = "source",
                         device: torch.device | str = "cpu") -> dict:
    """Fit ``model.expr_probe`` on the labelled clips of an (un-augmented) expression dataset and install it.

    Args:
        model: a :class:`~aufer.models.joint.JointNet` with ``expr_probe``.
        loader: an evaluation loader (batches with ``"index"``) over an evaluation-mode
            :class:`~aufer.datasets.clips.ExprClipDataset` (no augmentation), as
            ``aufer.datasets.loaders.make_loader(dataset, batch_size, train=False)`` makes it; its
            ``loader.dataset.records`` give the clips' sources. Clips without a label are left out.
        c: the logistic regression's ``C`` (the demo's value, 3e-4, was chosen by cross-validation over
            non-test people: docs/demo_design.md).
        balance: ``"source"``: each value of the records' ``source`` column (``real``, ``synthetic``) gets the
            same total weight (:func:`source_balanced_weights`); ``"none"``: every clip weighs 1. Records without
            a ``source`` column are unweighted.

    Returns:
        A summary: ``n_clips``, ``n_per_class``, ``c``, ``balance``, ``sources`` (clips per source),
        ``train_accuracy``, ``classes_seen``.

    Raises:
        ValueError: no probe in the model, an unknown ``balance``, or fewer than two labelled classes.
    """
    if getattr(model, "expr_probe", None) is None:
        raise ValueError("the model has no expression probe (build it with expr_probe=True)")
    if balance not in ("source", "none"):
        raise ValueError(f"balance must be 'source' or 'none', not {balance!r}")
    f = probe_features(model, loader, device)
    keep = f["expr"] >= 0
    x, y, idx = f["x"][keep], f["expr"][keep], f["index"][keep]
    table = loader.dataset.records.table
    w, sources = None, {}
    if "source" in table:
        src = table["source"].astype(str).to_numpy()[idx]
        names, counts = np.unique(src, return_counts=True)
        sources = dict(zip(names.tolist(), counts.tolist()))
        if balance == "source":
            w = source_balanced_weights(src)
    n_classes = model.expr_probe.linear.out_features
    fitted = fit_logistic(x, y, n_classes, c, w)
    model.expr_probe.set(fitted["weight"], fitted["bias"], fitted["mean"], fitted["scale"])
    return {"n_clips": int(len(y)), "n_per_class": np.bincount(y, minlength=n_classes).tolist(), "c": c,
            "balance": balance if w is not None else "none", "sources": sources,
            "train_accuracy": fitted["train_accuracy"],
            "classes_seen": fitted["classes_seen"]}
