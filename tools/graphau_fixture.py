"""Build the OFFICIAL ME-GraphAU / OpenGraphAU models from the fetched source, run them on seeded random weights and
inputs, and write the fixtures ``tests/fixtures/graphau_official_<case>.npz`` that ``tests/test_graphau.py`` checks
aufer's models against. Run by hand, never at test time (it needs the official git mirrors)::

    .venv/bin/python tools/graphau_fixture.py [--og DIR] [--me DIR] [--out tests/fixtures] [--check]

What a fixture holds (kept small: the weights are NOT stored): the official state-dict key list and shapes, the
seeds, the official probabilities ``cl`` (and the ME-GraphAU stage-2 edge logits), and the official non-learned
buffers of a Swin trunk (``relative_position_index``, ``attn_mask``, compressed). The weights and the input are
rebuilt in the test from the seeds with :func:`seeded_state_dict` / :func:`seeded_input` of this file (deterministic
for a given torch build: the fixtures were made and are checked with the project's venv).

How the official code is run (nothing of it is changed but the one line below):

* ``model/*.py`` are extracted with ``git show HEAD:`` into a temporary package per repository;
* ``torchvision`` (imported by ``resnet.py`` but unused) and ``timm.models.layers`` (``DropPath``, ``to_2tuple``,
  ``trunc_normal_`` for ``swin_transformer.py``; initialisation and training-only parts) are stubbed in
  ``sys.modules``;
* the trunk factories are called with ``pretrained=False`` (the official default loads ImageNet files);
* ME-GraphAU's stage-2 ``GNN.forward`` sets its ``start``/``end`` locals only on a GPU (``if dev >= 0``), so on CPU
  those two lines are replaced by ``start, end = self.start, self.end`` (the same matrices).
"""

from __future__ import annotations

import argparse
import importlib
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

OG = Path("/work/.mirror/lingjivoo+OpenGraphAU/repo")
ME = Path("/work/.mirror/CVI-SZU+ME-GraphAU/repo")
FILES = ("__init__", "ANFL", "MEFL", "basic_block", "graph", "graph_edge_model", "resnet", "swin_transformer")
_CONST = ("relative_position_index", "attn_mask")

#: case → (repository, variant, backbone, stage, image side, batch, seed)
CASES = {
    "opengraphau_resnet18_stage1": ("og", "opengraphau", "resnet18", 1, 112, 2, 1),
    "opengraphau_resnet18_stage2": ("og", "opengraphau", "resnet18", 2, 64, 2, 2),
    "opengraphau_resnet50_stage1": ("og", "opengraphau", "resnet50", 1, 64, 2, 3),
    "opengraphau_resnet50_stage2": ("og", "opengraphau", "resnet50", 2, 64, 2, 4),
    "bp4d_resnet50_stage1": ("me", "bp4d", "resnet50", 1, 64, 2, 5),
    "bp4d_resnet18_stage2": ("me", "bp4d", "resnet18", 2, 64, 2, 6),
    "disfa_resnet18_stage1": ("me", "disfa", "resnet18", 1, 64, 2, 7),
    "disfa_resnet50_stage2": ("me", "disfa", "resnet50", 2, 64, 2, 8),
    "opengraphau_swin_t_stage1": ("og", "opengraphau", "swin_t", 1, 224, 1, 9),
    "opengraphau_swin_t_stage2": ("og", "opengraphau", "swin_t", 2, 224, 1, 10),
    "bp4d_swin_b_stage2": ("me", "bp4d", "swin_b", 2, 224, 1, 11),
}


def seeded_state_dict(keys: list[str], shapes: list[tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for an official key list, reproducible from ``seed``: matrices N(0, 1 / fan_in), norm
    weights 1 + N(0, 0.1²), running variances U(0.5, 1.5), other vectors N(0, 0.1²), ``num_batches_tracked`` 0.
    The Swin constants (``relative_position_index``, ``attn_mask``) are left out (they come with the fixture)."""
    g = torch.Generator().manual_seed(int(seed))
    out = {}
    for key, shape in zip(keys, shapes):
        if key.endswith(_CONST):
            continue
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif len(shape) >= 2:
            out[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("weight"):
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=g)
    return out


def seeded_input(batch: int, size: int, seed: int) -> torch.Tensor:
    """The normalised input ``(batch, 3, size, size)`` of a case, N(0, 1), from ``seed + 1000``."""
    return torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(int(seed) + 1000))


def _stub_modules() -> None:
    tv = types.ModuleType("torchvision")
    tv.models = types.ModuleType("torchvision.models")
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("torchvision.models", tv.models)

    class DropPath(nn.Module):  # training-only; the official checks run in eval mode
        def __init__(self, p: float = 0.0):
            super().__init__()

        def forward(self, x):
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple = DropPath, lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = lambda t, std=1.0, **kw: nn.init.trunc_normal_(t, std=std)
    timm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    timm.models, models.layers = models, layers
    for name, mod in (("timm", timm), ("timm.models", models), ("timm.models.layers", layers)):
        sys.modules.setdefault(name, mod)


def extract(repo: Path, pkg: str, root: Path) -> None:
    """``model/*.py`` of ``repo`` → ``root/pkg/model/`` (CPU patch of ME-GraphAU's stage-2 GNN, see above)."""
    (root / pkg / "model").mkdir(parents=True, exist_ok=True)
    (root / pkg / "__init__.py").write_text("")
    for f in FILES:
        src = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:model/{f}.py"], check=True,
                             capture_output=True, text=True).stdout
        if pkg == "me_official" and f == "MEFL":
            old = ("        dev = x.get_device()\n        if dev >= 0:\n            start = self.start.to(dev)\n"
                   "            end = self.end.to(dev)\n")
            assert old in src, "ME-GraphAU MEFL.GNN.forward changed; update the CPU patch"
            src = src.replace(old, "        start, end = self.start, self.end\n")
        (root / pkg / "model" / f"{f}.py").write_text(src)


def official_model(pkg: str, variant: str, backbone: str, stage: int, size: int) -> nn.Module:
    """The official ``MEFARG`` of a case (trunks built with ``pretrained=False``; a Swin at ``size`` px)."""
    mod = importlib.import_module(f"{pkg}.model.{'ANFL' if stage == 1 else 'MEFL'}")
    resnet = importlib.import_module(f"{pkg}.model.resnet")
    swin = importlib.import_module(f"{pkg}.model.swin_transformer")
    mod.resnet18 = lambda: resnet.resnet18(pretrained=False)
    mod.resnet50 = lambda: resnet.resnet50(pretrained=False)
    mod.swin_transformer_tiny = lambda: swin.swin_transformer_tiny(pretrained=False, img_size=size)
    mod.swin_transformer_base = lambda: swin.swin_transformer_base(pretrained=False, img_size=size)
    arc = {"swin_t": "swin_transformer_tiny", "swin_b": "swin_transformer_base"}.get(backbone, backbone)
    k = 3 if variant == "disfa" else 4
    if variant == "opengraphau":
        args = dict(num_main_classes=27, num_sub_classes=14, backbone=arc)
    else:
        args = dict(num_classes=12 if variant == "bp4d" else 8, backbone=arc)
    if stage == 1:
        args.update(neighbor_num=k, metric="dots")
    return mod.MEFARG(**args)


def make_case(name: str, root: Path, out: Path, check: bool) -> Path:
    repo, variant, backbone, stage, size, batch, seed = CASES[name]
    torch.manual_seed(seed)
    net = official_model(f"{repo}_official", variant, backbone, stage, size).eval()
    own = net.state_dict()
    keys, shapes = list(own), [tuple(v.shape) for v in own.values()]
    sd = seeded_state_dict(keys, shapes, seed)
    sd.update({k: v for k, v in own.items() if k.endswith(_CONST)})
    net.load_state_dict(sd, strict=True)
    x = seeded_input(batch, size, seed)
    with torch.no_grad():
        res = net(x)
    cl, edge = (res if isinstance(res, tuple) else (res, None))
    arrays = {"keys": np.array(keys), "shapes": np.array(["x".join(map(str, s)) for s in shapes]),
              "case": np.array([variant, backbone, str(stage), str(size), str(batch), str(seed)]),
              "cl": cl.numpy().astype(np.float32)}
    if edge is not None:
        arrays["edge"] = edge.numpy().astype(np.float32)
    for k, v in own.items():
        if k.endswith(_CONST):
            arrays[f"buf/{k}"] = v.numpy().astype(np.int16 if k.endswith("relative_position_index") else np.int8)
    path = out / f"graphau_official_{name}.npz"
    np.savez_compressed(path, **arrays)
    msg = f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, cl {tuple(cl.shape)} in [{cl.min():.3f}, {cl.max():.3f}]"
    if check:  # aufer against the official model on the same weights
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from aufer.methods.graphau.official import from_official_state_dict
        m = from_official_state_dict(sd, variant, backbone, stage, input_size=size).eval()
        with torch.no_grad():
            got = m(x[:, None])
        msg += f"; aufer max|Δp| {(got['au_prob'][:, 0] - cl).abs().max():.2e}"
        if edge is not None:
            msg += f", max|Δedge| {(got['edge'][:, 0] - edge).abs().max():.2e}"
    print(msg, flush=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--og", type=Path, default=OG, help="OpenGraphAU git directory")
    ap.add_argument("--me", type=Path, default=ME, help="ME-GraphAU git directory")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures")
    ap.add_argument("--check", action="store_true", help="also run aufer's model and print max |Δp|")
    ap.add_argument("cases", nargs="*", help=f"cases (default all): {', '.join(CASES)}")
    a = ap.parse_args()
    torch.set_num_threads(1)
    _stub_modules()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        extract(a.og, "og_official", root)
        extract(a.me, "me_official", root)
        sys.path.insert(0, str(root))
        for name in a.cases or CASES:
            make_case(name, root, a.out, a.check)


if __name__ == "__main__":
    main()
