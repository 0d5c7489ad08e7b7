"""MDHR speed: training and inference clips/s, FLOPs per clip, achieved FLOP/s and peak GPU memory.

The official MDHR ResNet-50 (BP4D head: 12 AUs, 4 regions; ``create_model("mdhr.bp4d_resnet50",
pretrained=False)``: random weights, transformers config, no download) on B = 8 clips × T = 16 frames at 224 px,
the released recipe's batch. ``--small``: B = 1, T = 11 (the shortest clip k = 5 allows), 32 px (a 1 × 1 token
grid, so the three regions of Eq. 7 coincide), one timed step after one warm-up: a quick CPU check (about a
minute on 2 busy cores; the AdamW step over the 93 M parameters is much of it); the architecture is unchanged.
``--devices auto`` also measures the CPU at full size, which takes long: on a GPU machine use ``--devices cuda``.

For each device (CPU; CUDA when available) and precision -- fp32, bf16 autocast, bf16 autocast + channels_last
(weights and input in NHWC, as ``model.preprocess`` gives them from uint8 crops) -- it times

* training: forward, the MDHR loss (``aufer.methods.mdhr.loss.mdhr_loss``: weighted asymmetric loss + 0.01 × the
  AU-combination cross-entropy, random labels), backward and an AdamW step, in ``train()`` mode;
* inference: forward in ``eval()`` mode under ``torch.inference_mode()``;

after ``--warmup`` untimed steps, as the median of ``--steps`` timed ones (CUDA synchronised). FLOPs per clip are
counted once with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (matmuls, convolutions and
their backward; element-wise ops are not counted; the optimiser step adds none) and divided by B; the achieved
FLOP/s is that count × clips/s. On CUDA the FLOP/s is also given as a fraction of ``--peak-tflops``, by default
the dense BF16 tensor-core peak of the GPU when its name is in :data:`PEAK_BF16_TFLOPS` (NVIDIA datasheets; the
datasheets print twice these figures "with sparsity"); the same bf16 peak is used for the fp32 rows, so those
fractions understate what fp32 could reach. Peak GPU memory is ``torch.cuda.max_memory_allocated`` of the step.

    python benchmarks/mdhr_speed.py --small                     # CPU smoke run
    python benchmarks/mdhr_speed.py --devices cuda [--steps 10] [--warmup 3] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

#: dense BF16 tensor-core TFLOP/s by GPU name (NVIDIA datasheets; they print 2× "with sparsity"): H100/H200 SXM
#: 1,979 sparse → 989; H100/H200 NVL 1,671 → 835; H100 PCIe 1,513 → 756; A100 624 → 312; L40S 733 → 362;
#: L40 362 → 181; L4 242 → 121. Matched in this order against ``torch.cuda.get_device_name()``.
PEAK_BF16_TFLOPS = [("H200 NVL", 835.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H200", 989.0),
                    ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0),
                    ("L4", 121.0)]
MODES = (("fp32", None, False), ("bf16", torch.bfloat16, False), ("bf16+channels_last", torch.bfloat16, True))


def peak_for(name: str) -> float | None:
    """The dense BF16 peak (TFLOP/s) of a GPU from its name, or None if it is not in the table."""
    return next((v for key, v in PEAK_BF16_TFLOPS if key.lower() in name.lower()), None)


def _model(dev: torch.device, channels_last: bool):
    from aufer.models import create_model

    torch.manual_seed(0)
    m = create_model("mdhr.bp4d_resnet50", pretrained=False).to(dev)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _inputs(b: int, t: int, size: int, dev: torch.device, channels_last: bool):
    g = torch.Generator().manual_seed(0)
    if channels_last:  # (B, T, H, W, 3) viewed as (B, T, 3, H, W): the frames are NHWC, as preprocess gives them
        x = torch.randn(b, t, size, size, 3, generator=g).to(dev).permute(0, 1, 4, 2, 3)
    else:
        x = torch.randn(b, t, 3, size, size, generator=g).to(dev)
    y = torch.randint(0, 2, (b, t, 12), generator=g).to(dev)
    return x, {"au": y, "valid": torch.ones(b, t, dtype=torch.bool, device=dev)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _train_step(model, x, batch, opt, ctx, amp):
    from aufer.methods.mdhr.loss import mdhr_loss

    with torch.autocast(x.device.type, dtype=amp) if amp is not None else nullcontext():
        out = model(x)
    loss = mdhr_loss(out, None, batch, None, ctx=ctx)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _infer_step(model, x, amp):
    with torch.inference_mode(), (torch.autocast(x.device.type, dtype=amp) if amp is not None else nullcontext()):
        model(x)


def _timed(fn, dev, warmup: int, steps: int) -> float:
    """Median seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def meta_flops(build, shape: tuple[int, ...], backward_of) -> tuple[float, float]:
    """FLOPs of one batch of ``shape`` through the model ``build()`` makes: (inference forward, training forward +
    backward of ``backward_of(outputs)``), counted by FlopCounterMode on the meta device (shapes only: no memory,
    no time; the count depends on shapes, not on the device or precision)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build()
        x = torch.empty(*shape)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    infer = fc.get_total_flops()
    model.train()
    with FlopCounterMode(display=False) as fc:
        backward_of(model(x)).backward()
    return infer, fc.get_total_flops()


def count_flops(b: int, t: int, size: int) -> tuple[float, float]:
    """FLOPs per clip (inference forward; training forward + backward), :func:`meta_flops`. The training count
    backpropagates the sum of ``au_prob`` and the AU-combination logits, so every head gets its backward as under
    the MDHR loss (whose own element-wise ops FlopCounterMode does not count)."""
    from aufer.models import create_model

    infer, train = meta_flops(lambda: create_model("mdhr.bp4d_resnet50", pretrained=False), (b, t, 3, size, size),
                              lambda out: out["au_prob"].sum() + sum(s.sum() for s in out["sub"]))
    return infer / b, train / b


def _fmt_flops(v: float) -> str:
    for unit, s in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if v >= s:
            return f"{v / s:.2f} {unit}"
    return f"{v:.0f} FLOP"


def rate_text(kind: str, rate: float, unit: str, flops: float, peak: float | None, dev: torch.device) -> str:
    """One measurement as text: ``rate`` items/s (``unit``), the achieved FLOP/s (``flops`` per item × rate), its
    share of ``peak`` TFLOP/s when known, and on CUDA the peak memory since the last reset."""
    text = f"{kind} {rate:8.2f} {unit}, {_fmt_flops(flops * rate)}/s"
    if peak:
        text += f" ({100 * flops * rate / (peak * 1e12):5.1f} % of peak)"
    if dev.type == "cuda":
        text += f" mem {torch.cuda.max_memory_allocated(dev) / 2 ** 30:6.2f} GiB"
    return text


def measure(kind: str, fn, dev: torch.device, warmup: int, steps: int, items: int, unit: str, flops: float,
            peak: float | None) -> str:
    """Time ``fn`` (:func:`_timed`, peak CUDA memory reset first; ``items`` per call) and give :func:`rate_text`,
    or ``"<kind>: failed (…)"`` when it raises a RuntimeError (e.g. an op without a bf16 kernel on the device)."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        sec = _timed(fn, dev, warmup, steps)
    except RuntimeError as e:
        return f"{kind}: failed ({str(e).splitlines()[0][:80]})"
    return rate_text(kind, items / sec, unit, flops, peak, dev)


def add_run_args(ap: argparse.ArgumentParser, small_help: str) -> None:
    """The options every speed script shares: --small, --devices, --steps, --warmup."""
    ap.add_argument("--small", action="store_true", help=small_help)
    ap.add_argument("--devices", default="auto", help="comma-separated cpu / cuda; auto = cpu, and cuda if available")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 10; --small 1)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --small 1)")


def run_settings(args) -> tuple[int, int, list[str]]:
    """``(steps, warmup, devices)`` from the options of :func:`add_run_args`."""
    steps = args.steps if args.steps is not None else (1 if args.small else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 3)
    devs = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])] if args.devices == "auto" else \
        [d.strip() for d in args.devices.split(",") if d.strip()]
    return steps, warmup, devs


def bench(dev: torch.device, b: int, t: int, size: int, warmup: int, steps: int, peak_tflops: float | None,
          flops: tuple[float, float]) -> None:
    from aufer.training.losses import LossContext

    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = peak_tflops if peak_tflops is not None else peak_for(name)
        src = "--peak-tflops" if peak_tflops is not None else ("datasheet table" if peak else "unknown GPU")
        print(f"CUDA: {name}; peak {peak or '?'} TFLOP/s dense bf16 ({src}); cudnn.benchmark "
              f"{torch.backends.cudnn.benchmark}, TF32 conv {torch.backends.cudnn.allow_tf32} / matmul "
              f"{torch.backends.cuda.matmul.allow_tf32}")
    else:
        peak = None
        print(f"CPU: {torch.get_num_threads()} threads")
    f_inf, f_tr = flops
    for label, amp, cl in MODES:
        model = _model(dev, cl)
        x, batch = _inputs(b, t, size, dev, cl)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=5e-4)
        ctx = LossContext(au_weight=torch.ones(12, device=dev))
        row = [f"  {label:19s}"]
        # inference first: AdamW's state does not exist yet, so the inference peak memory is weights + activations
        for kind, fn, flops in (("infer", lambda: _infer_step(model, x, amp), f_inf),
                                ("train", lambda: _train_step(model, x, batch, opt, ctx, amp), f_tr)):
            model.train(kind == "train")
            row.append(measure(kind, fn, dev, warmup, steps, b, "clips/s", flops, peak))
        print(" | ".join(row), flush=True)
        del model, opt, x, batch
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap, "B = 1, T = 11, 32 px (a quick CPU check)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="GPU peak for the fraction (default: the GPU's dense bf16 datasheet peak, if known)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="set torch.backends.cudnn.benchmark (aufer's "
                    "engine leaves it off)")
    args = ap.parse_args()
    b, t, size = (1, 11, 32) if args.small else (8, 16, 224)
    steps, warmup, devs = run_settings(args)
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    print(f"MDHR ResNet-50 (mdhr.bp4d_resnet50, random init), B = {b} clips × T = {t} frames, {size} px; "
          f"median of {steps} steps after {warmup} warm-up; torch {torch.__version__}")
    flops = count_flops(b, t, size)
    print(f"FLOPs per clip (FlopCounterMode): inference {_fmt_flops(flops[0])}, training (forward + backward) "
          f"{_fmt_flops(flops[1])}")
    for d in devs:
        if d == "cuda" and not torch.cuda.is_available():
            print("CUDA: not available on this machine; not measured")
            continue
        bench(torch.device(d), b, t, size, warmup, steps, args.peak_tflops, flops)
    if "cuda" not in devs or not torch.cuda.is_available():
        print("(no CUDA figures: run on a GPU machine for the fp32 / bf16 / channels_last GPU rows)")


if __name__ == "__main__":
    main()
