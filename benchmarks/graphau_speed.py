"""ME-GraphAU / OpenGraphAU speed: stage-1 ResNet-50 training clips/s and inference faces/s, fp32 and bf16.

* training: ``graphau.bp4d_resnet50_stage1`` (ME-GraphAU stage 1, BP4D's 12 AUs, k = 4; random weights, no
  download) on the released recipe's batch, 64 one-frame clips at 224 px: forward, the ME-GraphAU loss
  (``aufer.methods.graphau.loss.graphau_loss``: the weighted asymmetric loss, random labels), backward and an AdamW
  step (lr 1e-4, weight decay 5e-4, as ``configs/_base/graphau.yaml``), in ``train()`` mode;
* inference: ``graphau.opengraphau_resnet50_stage1`` (the 41-AU model a user imports) on ``--infer-batch`` faces
  (default 64) at 224 px, ``eval()`` under ``torch.inference_mode()``.

Precisions as ``benchmarks/mdhr_speed.py``: fp32, bf16 autocast, bf16 autocast + channels_last; median of
``--steps`` timed steps after ``--warmup`` (CUDA synchronised); FLOPs per face counted once on the meta device with
``FlopCounterMode`` and the achieved FLOP/s as a share of the GPU's dense bf16 peak (same table as mdhr_speed);
peak GPU memory per measurement. ``--small``: 2 faces at 64 px, one timed step, a CPU smoke run.

    python benchmarks/graphau_speed.py --small                 # CPU smoke run
    python benchmarks/graphau_speed.py --devices cuda [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mdhr_speed import MODES, _fmt_flops, _sync, add_run_args, measure, meta_flops, peak_for, run_settings  # noqa: E402

TRAIN_MODEL = "graphau.bp4d_resnet50_stage1"
INFER_MODEL = "graphau.opengraphau_resnet50_stage1"


def _model(name: str, size: int, dev: torch.device, channels_last: bool):
    from aufer.models import create_model

    torch.manual_seed(0)
    m = create_model(name, input_size=size).to(dev)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _input(b: int, size: int, dev: torch.device, channels_last: bool) -> torch.Tensor:
    """``(B, 1, 3, size, size)`` one-frame clips; NHWC frames viewed as NCHW for channels_last."""
    g = torch.Generator().manual_seed(0)
    if channels_last:
        return torch.randn(b, 1, size, size, 3, generator=g).to(dev).permute(0, 1, 4, 2, 3)
    return torch.randn(b, 1, 3, size, size, generator=g).to(dev)


def count_flops(name: str, size: int) -> tuple[float, float]:
    """FLOPs per face: inference forward, training forward + backward (:func:`mdhr_speed.meta_flops`)."""
    from aufer.models import create_model

    return meta_flops(lambda: create_model(name, input_size=size), (1, 1, 3, size, size), lambda out: out["au"].sum())


def bench(dev: torch.device, b_train: int, b_infer: int, size: int, warmup: int, steps: int,
          flops: dict[str, tuple[float, float]]) -> None:
    from contextlib import nullcontext

    from aufer.methods.graphau.loss import graphau_loss
    from aufer.training.losses import LossContext

    peak = None
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = peak_for(name)
        print(f"CUDA: {name}; peak {peak or '?'} TFLOP/s dense bf16 (datasheet table)")
    else:
        print(f"CPU: {torch.get_num_threads()} threads")

    def amp_ctx(amp):
        return torch.autocast(dev.type, dtype=amp) if amp is not None else nullcontext()

    for label, amp, cl in MODES:
        row = [f"  {label:19s}"]
        infer_model = _model(INFER_MODEL, size, dev, cl).eval()
        x_inf = _input(b_infer, size, dev, cl)

        def infer():
            with torch.inference_mode(), amp_ctx(amp):
                infer_model(x_inf)

        train_model = _model(TRAIN_MODEL, size, dev, cl).train()
        x_tr = _input(b_train, size, dev, cl)
        g = torch.Generator().manual_seed(1)
        batch = {"au": torch.randint(0, 2, (b_train, 1, 12), generator=g).to(dev),
                 "valid": torch.ones(b_train, 1, dtype=torch.bool, device=dev)}
        opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4, weight_decay=5e-4)
        ctx = LossContext(au_weight=torch.ones(12, device=dev))

        def train():
            with amp_ctx(amp):
                out = train_model(x_tr)
            loss = graphau_loss(out, None, batch, None, ctx=ctx)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for kind, fn, b, f in (("infer", infer, b_infer, flops[INFER_MODEL][0]),
                               ("train", train, b_train, flops[TRAIN_MODEL][1])):
            row.append(measure(kind, fn, dev, warmup, steps, b, "faces/s" if kind == "infer" else "clips/s", f, peak))
        print(" | ".join(row), flush=True)
        del infer_model, train_model, opt, x_inf, x_tr
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap, "2 faces at 64 px, one timed step (CPU smoke run)")
    ap.add_argument("--infer-batch", type=int, default=64, help="faces per inference call")
    args = ap.parse_args()
    b_train, b_infer, size = (2, 2, 64) if args.small else (64, args.infer_batch, 224)
    steps, warmup, devs = run_settings(args)
    print(f"ME-GraphAU stage 1 ResNet-50 (random init): training {TRAIN_MODEL} on {b_train} one-frame clips, "
          f"inference {INFER_MODEL} on {b_infer} faces, {size} px; median of {steps} steps after {warmup} "
          f"warm-up; torch {torch.__version__}")
    flops = {n: count_flops(n, size) for n in (TRAIN_MODEL, INFER_MODEL)}
    print(f"FLOPs per face: inference {_fmt_flops(flops[INFER_MODEL][0])}, training (forward + backward) "
          f"{_fmt_flops(flops[TRAIN_MODEL][1])}")
    for d in devs:
        if d == "cuda" and not torch.cuda.is_available():
            print("CUDA: not available on this machine; not measured")
            continue
        bench(torch.device(d), b_train, b_infer, size, warmup, steps, flops)


if __name__ == "__main__":
    main()
