"""MAL (reconstructed, methods.md §5) cost: the time of a MAL training step relative to a plain joint step.

Both steps are what the engine runs: the step function (``aufer.training.steps.joint_step`` with the ``joint`` loss;
``aufer.methods.mal.step.mal_step``, variants ``l2rw`` — the one-step look-ahead with per-sample ε — and ``mwn`` — the
Meta-Weight-Net), then backward and an AdamW step over the model's two parameter groups (backbone lr 1e-5, heads
1e-4, the look-ahead's η). Random weights (no download), random labels, ``train()`` mode. Two pairings:

* ``same batch``: both steps get the same AU batch and expression batch (MAL splits the AU batch into B_a and the
  meta batch B_m, so its real update sees half the AU clips);
* ``recipe``: MAL gets twice the AU clips (B_a = the joint step's AU batch, as configs/mal/ pairs with the naive
  joint baseline).

``l2rw:heads`` is the l2rw step with ``step_args.meta_params`` = every module but the backbone: the virtual step
moves only the fusion layer and the heads, so no second-order pass goes through the backbone (a cheaper
approximation of the reconstruction; the recipes use the full look-ahead).

Timing: the median of ``--steps`` steps after ``--warmup``, the three steps interleaved (so that a changing machine
load hits them alike; CUDA synchronised); on CUDA also the peak memory (``torch.cuda.max_memory_allocated``).

    python benchmarks/mal_speed.py                           # CPU: Lite0 at 64 px, 2 + 2 clips × 4 frames
    python benchmarks/mal_speed.py --devices cuda --model r50 --au 8 --expr 12 --frames 16 --size 224
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from mdhr_speed import _sync  # same folder

R50 = {"model_type": "resnet", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048],
       "embedding_size": 64, "layer_type": "bottleneck"}


def _model(name: str, size: int, dev):
    from aufer import vocab
    from aufer.models import create_model

    torch.manual_seed(0)
    aus, emotions = vocab.dataset_aus("BP4D"), vocab.EMOTIONS_7
    if name == "lite0":
        m = create_model("aufer_lite.lite0", pretrained=False, input_size=size, aus=aus, emotions=emotions)
    elif name == "tiny":
        m = create_model("aufer_tiny", input_size=size, aus=aus, emotions=emotions)
    elif name == "r50":
        m = create_model("aufer_hf", model=None, pretrained=False, hf_config=R50, input_size=size, aus=aus,
                         emotions=emotions)
    else:
        raise SystemExit(f"--model: lite0, tiny or r50, not {name!r}")
    return m.to(dev).train()


def _batch(g, b: int, t: int, size: int, n_au: int, n_e: int, dev, au: bool) -> dict:
    out = {"crops": torch.randint(0, 256, (b, t, size, size, 3), dtype=torch.uint8, generator=g),
           "landmarks": torch.rand(b, t, 478, 3, generator=g) * size,
           "au": torch.randint(0, 2, (b, t, n_au), generator=g) if au else torch.full((b, t, n_au), -1),
           "expr": torch.full((b,), -1) if au else torch.randint(0, n_e, (b,), generator=g),
           "valid": torch.ones(b, t, dtype=torch.bool)}
    return {k: v.to(dev) for k, v in out.items()}


def _setup(name, size, dev, step_args):
    from aufer.training.steps import StepContext
    from aufer.training.losses import LossContext
    from aufer.models import param_groups

    model = _model(name, size, dev)
    lrs = {"backbone": 1e-5, "heads": 1e-4}
    opt = torch.optim.AdamW([{"params": [p for p in ps if p.requires_grad], "lr": lrs.get(gname, 1e-4)}
                             for gname, ps in param_groups(model).items()], weight_decay=1e-4)
    cw = torch.ones(len(model.aus), device=dev)
    ctx = StepContext(device=dev, loss=LossContext(au_weight=cw), optimizer=opt, args=dict(step_args))
    return model, opt, ctx


def _run(model, opt, ctx, step_fn, au, expr, amp):
    from aufer.training.losses import joint_loss

    with torch.autocast(au["crops"].device.type, dtype=amp) if amp is not None else nullcontext():
        loss = step_fn(model, au, expr, joint_loss, ctx)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    from aufer.training.steps import joint_step
    from aufer.methods.mal.step import RECONSTRUCTED, mal_step, split_batch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="auto", help="cpu / cuda, comma-separated; auto = cpu, and cuda if available")
    ap.add_argument("--model", default="lite0", help="lite0 (aufer_lite.lite0) | tiny (aufer_tiny) | r50 (aufer_hf ResNet-50)")
    ap.add_argument("--au", type=int, default=2, help="AU clips per step (joint; MAL gets 2x in the recipe pairing)")
    ap.add_argument("--expr", type=int, default=2, help="expression clips per step")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--variants", default="l2rw,mwn,l2rw:heads",
                    help="MAL variants; ':heads' = the look-ahead moves only the non-backbone parameters "
                         "(step_args.meta_params), the backbone's double backward is skipped")
    ap.add_argument("--pairings", default="same,recipe")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads); default torch's")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devs = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else \
        [d.strip() for d in args.devices.split(",") if d.strip()]
    print(f"{RECONSTRUCTED}: step cost vs the joint step; model {args.model} (random init) at {args.size} px, "
          f"{args.au} AU + {args.expr} expression clips x {args.frames} frames; median of {args.steps} steps after "
          f"{args.warmup}; torch {torch.__version__}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    pairings = [p.strip() for p in args.pairings.split(",") if p.strip()]
    for name in devs:
        dev = torch.device(name)
        print(f"{name}: {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'{torch.get_num_threads()} threads'}",
              flush=True)
        modes = [("fp32", None), ("bf16", torch.bfloat16)] if dev.type == "cuda" else [("fp32", None)]
        for label, amp in modes:
            g = torch.Generator().manual_seed(0)
            expr = _batch(g, args.expr, args.frames, args.size, 12, 7, dev, au=False)
            au_by = {n: _batch(g, n, args.frames, args.size, 12, 7, dev, au=True) for n in (args.au, 2 * args.au)}
            steps = {"joint": (_setup(args.model, args.size, dev, {}), joint_step)}
            for v in variants:
                model, opt, ctx = _setup(args.model, args.size, dev, {"variant": v.split(":")[0], "meta_fraction": 0.5})
                if v.endswith(":heads"):  # the look-ahead moves only what is not the backbone
                    ctx.args["meta_params"] = [n for n, _ in model.named_children() if n != "backbone"]
                steps[v] = ((model, opt, ctx), mal_step)
            for pairing in pairings:
                n_mal = args.au if pairing == "same" else 2 * args.au
                if n_mal < 2:
                    print(f"  {label}, {pairing} batch: skipped, MAL's AU batch needs at least 2 clips")
                    continue
                times: dict[str, list[float]] = {k: [] for k in steps}
                mem: dict[str, float] = {}
                for i in range(args.warmup + args.steps):  # interleaved, so that a changing load hits all alike
                    for key, ((model, opt, ctx), fn) in steps.items():
                        au = au_by[args.au if key == "joint" else n_mal]
                        if dev.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(dev)
                        _sync(dev)
                        t0 = time.perf_counter()
                        _run(model, opt, ctx, fn, au, expr, amp)
                        _sync(dev)
                        if i >= args.warmup:
                            times[key].append(time.perf_counter() - t0)
                        if dev.type == "cuda":
                            mem[key] = max(mem.get(key, 0.0), torch.cuda.max_memory_allocated(dev) / 2 ** 30)
                med = {k: statistics.median(v) for k, v in times.items()}
                gib = lambda k: f", peak {mem[k]:.2f} GiB" if k in mem else ""  # noqa: E731
                print(f"  {label}, {pairing} batch: joint step ({args.au} AU clips) {med['joint']:.3f} s{gib('joint')}",
                      flush=True)
                b_a, b_m = (len(b["crops"]) for b in split_batch(au_by[n_mal], 0.5))
                for v in variants:
                    print(f"    MAL (reconstructed) {v} ({n_mal} AU clips: B_a {b_a}, B_m {b_m}): "
                          f"{med[v]:.3f} s, ratio {med[v] / med['joint']:.2f}x the joint step{gib(v)}", flush=True)
            del steps
            if dev.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
