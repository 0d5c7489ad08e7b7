"""`aufer train | evaluate | experiment | table` as processes: one-line errors, resume after SIGKILL, 2-process
DDP, and the end-to-end path from fake benchmark layouts to a paper-style table."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from engine_data import au_store, tiny_recipe

pytestmark = pytest.mark.slow

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _aufer(*args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "aufer", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **ENV}, timeout=timeout)


def _write(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe))
    return path


def _one_line_error(r, needle):
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("error:")
    assert needle in r.stderr
    assert len([ln for ln in r.stderr.strip().splitlines() if ln.strip()]) <= 3


def test_user_mistakes_are_one_line_errors(tmp_path):
    au = au_store(tmp_path / "au.sqlite")
    bad_key = _write(tmp_path / "k.yaml", {**tiny_recipe(au), "trian": {}})
    _one_line_error(_aufer("train", bad_key, "--out", tmp_path / "r"), "unknown recipe key 'trian'")
    ok = _write(tmp_path / "ok.yaml", tiny_recipe(au))
    _one_line_error(_aufer("train", ok, "--fold", "7", "--out", tmp_path / "r"), "fold '7' is not a fold of BP4D")
    _one_line_error(_aufer("train", ok, "--set", "data.au.store=missing.sqlite", "--out", tmp_path / "r"),
                    "aufer prepare")
    _one_line_error(_aufer("train", tmp_path / "nope.yaml"), "no such recipe file")
    _one_line_error(_aufer("evaluate", tmp_path), "is not a run folder")
    # a programming error keeps its traceback (the catch is narrow): a model factory that gets a wrong argument
    # type fails inside torch, not in aufer's user-error types
    r = _aufer("train", ok, "--set", "model.args.width=[1]", "--out", tmp_path / "r2")
    assert r.returncode != 0 and ("Traceback" in r.stderr or "error:" in r.stderr)


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """`aufer train` killed with SIGKILL in mid-run, then `--resume`, ends with the same weights, bit for bit,
    as an uninterrupted run."""
    au = au_store(tmp_path / "au.sqlite", seqs=3)
    rec = tiny_recipe(au, train={"epochs": 6, "checkpoint_every": 3, "ema": 0.9})
    rec["model"]["args"]["dropout"] = 0.2
    recipe = _write(tmp_path / "r.yaml", rec)
    r = _aufer("train", recipe, "--out", tmp_path / "full")
    assert r.returncode == 0, r.stderr[-3000:]
    total = json.loads(next((tmp_path / "full" / "state").glob("step-*/meta.json")).read_text())["global_step"]

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "aufer", "train", str(recipe), "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **ENV})
    seen, deadline = 0, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        pointer = run / "state" / "LATEST"
        if pointer.is_file():
            try:
                seen = json.loads((run / "state" / pointer.read_text().strip() / "meta.json").read_text())["global_step"]
            except (OSError, ValueError, KeyError):
                continue
            if seen >= 3:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= seen < total and not (run / "metrics.json").exists(), "the run should have been killed mid-way"
    r2 = _aufer("train", recipe, "--out", run, "--resume")
    assert r2.returncode == 0, r2.stderr[-3000:]
    a, b = load_file(str(tmp_path / "full" / "last.safetensors")), load_file(str(run / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_file(str(tmp_path / "full" / "best.safetensors")).keys() == load_file(str(run / "best.safetensors")).keys()


def test_two_process_ddp_equals_one_process_at_the_same_global_batch(tmp_path):
    """2 gloo processes with batch 3 each reach the same weights after 4 steps as 1 process with batch 6.
    BatchNorm uses its running statistics (train.freeze_bn; SyncBatchNorm has no CPU kernel) and dropout is
    off, so the two runs compute the same function of the same 6 clips per step."""
    au = au_store(tmp_path / "au.sqlite", seqs=4)  # fold 1: 3 training subjects × 4 sequences = 12 windows
    rec = tiny_recipe(au, train={"epochs": 2, "freeze_bn": True}, optim={"lr": 1e-2})
    rec["data"]["au"].update({"per_sequence": 1, "batch_size": 6})
    one = _write(tmp_path / "one.yaml", rec)
    rec["data"]["au"]["batch_size"] = 3
    two = _write(tmp_path / "two.yaml", rec)
    r1 = _aufer("train", one, "--out", tmp_path / "one")
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                         "29561", "-m", "aufer", "train", str(two), "--out", str(tmp_path / "two")],
                        capture_output=True, text=True, env={**os.environ, **ENV}, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    steps = [json.loads(next((tmp_path / d / "state").glob("step-*/meta.json")).read_text())["global_step"]
             for d in ("one", "two")]
    assert steps[0] == steps[1] == 4
    a, b = load_file(str(tmp_path / "one" / "last.safetensors")), load_file(str(tmp_path / "two" / "last.safetensors"))
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5, rtol=1e-4), k
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text())["test"]["au"] for d in ("one", "two"))
    assert m1["au_f1_mean"] == pytest.approx(m2["au_f1_mean"], abs=1e-6)


def test_prepare_experiment_table_evaluate_predict_end_to_end(tmp_path, faces_df):
    """fake BP4D + fake DFEW → `aufer prepare` → `aufer experiment` of a tiny joint recipe over 3 fold pairs →
    a table with the right folds, subjects and metrics; the checkpoint loads in `aufer evaluate` and
    `aufer predict`."""
    from fakes import make_fake_bp4d, make_fake_dfew

    bp4d = make_fake_bp4d(tmp_path / "BP4D", subjects=("F001", "M011", "F007", "F015"), tasks=("T1",), n_frames=8,
                          gap=False, size=(160, 120))
    make_fake_dfew(tmp_path / "DFEW", n_clips=14, n_frames=4, size=(112, 112))
    for name, root, store in (("BP4D", bp4d["root"], "bp4d.sqlite"), ("DFEW", tmp_path / "DFEW", "dfew.sqlite")):
        r = _aufer("prepare", name, "--root", root, "--out", tmp_path / store, "--size", "32", "--workers", "1")
        assert r.returncode == 0, r.stderr[-3000:]
    rec = tiny_recipe(tmp_path / "bp4d.sqlite", tmp_path / "dfew.sqlite", train={"epochs": 1}, name="tiny-joint")
    rec["folds"] = ["1-1", "1-2", "1-3"]
    rec["data"]["au"].update({"clip_len": 2, "batch_size": 2})
    recipe = _write(tmp_path / "tiny.yaml", rec)
    r = _aufer("experiment", recipe, "--out", tmp_path / "exp")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "exp" / "summary.json").read_text())
    assert s["folds"] == ["fold-1-1", "fold-1-2", "fold-1-3"] and s["selection"] == "validation-selected"
    assert set(s["mean"]) >= {"AU1", "AU24", "au_f1_mean", "uar", "war"}
    assert s["data"]["au"]["dataset"] == "BP4D" and s["data"]["expr"]["dataset"] == "DFEW"
    tests = {f: set(json.loads((tmp_path / "exp" / f / "run.json").read_text())["data"]["au"]["ids"]["test"])
             for f in s["folds"]}
    # ME-GraphAU/MDHR naming: fold 1 tests part3 (F007, F015), fold 2 part2 (M011), fold 3 part1 (F001)
    assert tests == {"fold-1-1": {"F007", "F015"}, "fold-1-2": {"M011"}, "fold-1-3": {"F001"}}
    md = (tmp_path / "exp" / "summary.md").read_text()
    assert "mean ± std" in md and "tiny-joint" in md and "validation-selected" in md
    # rerun: every fold is finished and skipped
    r = _aufer("experiment", recipe, "--out", tmp_path / "exp")
    assert r.returncode == 0 and r.stdout.count("finished with this recipe, skipped") == 3
    from pathlib import Path

    published = Path(__file__).parents[1] / "configs" / "published" / "au_f1.yaml"
    r = _aufer("table", tmp_path / "exp", "--published", published, "--out", tmp_path / "t.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    # the row says which model was built and that it was trained from random weights
    assert "tiny-joint [validation-selected; 3 folds; model aufer_tiny_image.demo; random weights]" in r.stdout
    assert "MDHR ResNet-50 BP4D (published" in r.stdout
    import pandas as pd

    tab = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert tab.loc[tab.index.str.startswith("MDHR ResNet-50"), "au_f1_mean"].item() == 66.6
    assert abs(tab.loc[tab.index.str.startswith("tiny-joint"), "au_f1_mean"].item() - 100 * s["mean"]["au_f1_mean"]) < 1e-9
    run = tmp_path / "exp" / "fold-1-1"
    r = _aufer("evaluate", run, "--split", "test")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "metrics_test_best.json").is_file() and (run / "predictions" / "test_best_au_frames.parquet").is_file()
    img = faces_df.path.iloc[0]
    r = _aufer("predict", img, "--model", run / "best.safetensors", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    import pandas as pd

    df = pd.read_csv(tmp_path / "p.csv")
    assert df["face_detected"].all() and "AU12_p" in df and "emo_happiness" in df


@pytest.mark.slow
def test_mdhr_recipe_experiment_and_paper_table(tmp_path):
    """fake BP4D → `aufer prepare` → `aufer experiment` of the shipped MDHR recipe (a tiny ResNet, 1 epoch, T = 11)
    over the 3 folds → `aufer table` puts its per-AU F1 in the paper's layout beside MDHR's published row."""
    from pathlib import Path

    import pandas as pd

    from fakes import make_fake_bp4d

    bp4d = make_fake_bp4d(tmp_path / "BP4D", subjects=("F001", "M011", "F007", "F015"), tasks=("T1", "T2"), n_frames=12,
                          gap=False, size=(160, 120))
    r = _aufer("prepare", "BP4D", "--root", bp4d["root"], "--out", tmp_path / "bp4d.sqlite", "--size", "32",
               "--workers", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    configs = Path(__file__).parents[1] / "configs"
    tiny = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                layer_type="basic")
    rec = {"base": str(configs / "mdhr" / "mdhr-resnet50_bp4d_16f_200e.yaml"), "name": "tiny-mdhr",
           "model": {"args": {"model": None, "hf_config": tiny, "pretrained": False, "input_size": 32, "dim": 16}},
           "data": {"au": {"store": str(tmp_path / "bp4d.sqlite"), "clip_len": 11, "eval_clip_len": 11,
                           "batch_size": 1, "val_subjects": 1, "transform": {"size": 32, "resize": 36}},
                    "workers": 0},
           "train": {"epochs": 1}, "select": {"every": 1}}
    recipe = _write(tmp_path / "tiny_mdhr.yaml", rec)
    r = _aufer("experiment", recipe, "--out", tmp_path / "exp")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "exp" / "summary.json").read_text())
    assert len(s["folds"]) == 3 and s["selection"] == "validation-selected"
    assert {"AU1", "AU24", "au_f1_mean"} <= set(s["mean"]) and "uar" not in s["mean"]  # AU-only
    r = _aufer("table", tmp_path / "exp", "--published", configs / "published" / "au_f1.yaml", "--out", tmp_path / "t.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    tab = pd.read_csv(tmp_path / "t.csv", index_col=0)
    ours = tab.loc[tab.index.str.startswith("tiny-mdhr")]
    assert len(ours) == 1 and abs(ours["au_f1_mean"].item() - 100 * s["mean"]["au_f1_mean"]) < 1e-9
    assert tab.loc[tab.index.str.startswith("MDHR ResNet-50"), "au_f1_mean"].item() == 66.6
    bp4d_aus = [f"AU{a}" for a in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)]
    assert ours[bp4d_aus].notna().all(axis=None)  # per-AU F1 of the 12 BP4D AUs, in the published rows' columns
    assert ours[[c for c in tab.columns if c.startswith("AU") and c not in bp4d_aus]].isna().all(axis=None)
