#!/usr/bin/env bash
# The GPU checks of a session that is lent a device (one short run, about 9 minutes on one H100/H200-class GPU):
# MDHR ResNet-50 training / inference clips/s in fp32, bf16 and bf16 + channels_last with % of peak and memory;
# SSM ViT-B/16 at the released batch (12 + 8 clips × 16 frames) in fp32, bf16 and with gradient checkpointing;
# the engine's ResNet-50 joint recipe throughput; the MAL step against a joint step (ResNet-50, the recipe batch); ME-GraphAU stage-1 ResNet-50 training clips/s
# (batch 64) and OpenGraphAU inference faces/s in fp32 / bf16. Each part is independent: one that fails does not stop the rest.
# Run from the repository root with the venv built (make install):  bash benchmarks/gpu_checks.sh
set -u
PY=${PY:-.venv/bin/python}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
echo "== MDHR";  timeout 200 $PY benchmarks/mdhr_speed.py --devices cuda --steps 5 --warmup 2 || echo "mdhr_speed failed ($?)"
echo "== SSM";   timeout 200 $PY benchmarks/ssm_speed.py --devices cuda --steps 3 --warmup 1 || echo "ssm_speed failed ($?)"
echo "== engine"; timeout 120 $PY benchmarks/train_speed.py --rounds 1 --steps 5 --gpu-steps 10 || echo "train_speed failed ($?)"
echo "== MAL";   timeout 120 $PY benchmarks/mal_speed.py --devices cuda --model r50 --au 8 --expr 12 --frames 16 --size 224 --steps 5 || echo "mal_speed failed ($?)"
echo "== ME-GraphAU"; timeout 100 $PY benchmarks/graphau_speed.py --devices cuda --steps 5 --warmup 2 || echo "graphau_speed failed ($?)"
