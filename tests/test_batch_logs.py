"""Logs for batch jobs: the non-terminal progress line, timing columns of steps.csv/epochs.csv, ETAs from
measured step times, loader defaults that fit the machine (no DataLoader warnings on CPU), and DDP metric
parity (every validation metric of a single-process run is in a 2-process run's epochs.csv)."""

import io
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from rich.console import Console

from engine_data import au_store, tiny_recipe

from aufer.datasets import loaders as L
from aufer.engine.logs import RunLog, duration, peak_memory, progress_line
from aufer.engine.recipe import load
from aufer.engine.runner import fit

#: the non-terminal line: epoch, step/total, loss terms, lr, step and data time, samples/s, peak memory, ETAs
LINE = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) \| (loss [-\d.]+.*?) \| lr \d\.\d\de[-+]\d+ \| step [\d.]+s "
                  r"data [\d.]+s \| (?:[\d.]+|nan) samples/s \| peak_(?:rss|cuda) \d+ MB \| "
                  r"ETA \d+:\d\d:\d\d run \d+:\d\d:\d\d$")


def _console(terminal: bool):
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=400), buf


def test_duration_and_peak_memory():
    assert duration(0) == "0:00:00" and duration(3725.4) == "1:02:05" and duration(None) == "-:--:--"
    assert duration(float("nan")) == "-:--:--"
    name, mb = peak_memory(torch.device("cpu"))
    assert name == "peak_rss_mb" and 1 < mb < 1e6  # this Python process holds torch: tens of MB at least


def test_progress_line_format():
    line = progress_line(2, 10, 40, 120, {"loss": 0.69314, "loss_au": 0.5}, 1e-3, 0.1052, 0.0123, 304.84,
                         ("peak_rss_mb", 812.4), 8.0, 130.0)
    assert line == ("epoch 2/10 step 40/120 | loss 0.6931 loss_au 0.5000 | lr 1.00e-03 | step 0.105s data 0.012s | "
                    "304.8 samples/s | peak_rss 812 MB | ETA 0:00:08 run 0:02:10")
    assert LINE.match(line)


def test_non_terminal_lines_every_n_steps_with_measured_eta(tmp_path):
    """Not a terminal: no bar, one line every print_every steps (and at an epoch's last step); the ETAs are the
    measured mean step time × the steps left, from the first step on; the CSVs get the timing columns."""
    console, buf = _console(terminal=False)
    log = RunLog(tmp_path, console=console, tensorboard=False, print_every=4, epochs=3, steps_per_epoch=10,
                 samples_per_step=8, header="training 3 epochs")
    assert log.bar is None and log.lines
    log.task("epoch 1/3", 10)
    for done in range(1, 11):
        log.train_step(done, 1, done, {"loss": 1.0 / done}, 1e-3, step_s=2.0, data_s=0.5, row=done % 5 == 0)
    log.epoch(1, {"train_loss": 0.3, "lr": 1e-3}, 10)
    log.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "training 3 epochs"
    assert len(lines) == 4 and all(LINE.match(ln) for ln in lines[1:]), lines
    # step 4: 6 steps left in the epoch and 20 in the two epochs after it, at 2 s each; 8 samples per 2 s
    assert lines[1] == ("epoch 1/3 step 4/10 | loss 0.2500 | lr 1.00e-03 | step 2.000s data 0.500s | 4.0 samples/s | "
                        f"peak_rss {peak_memory(torch.device('cpu'))[1]:.0f} MB | ETA 0:00:12 run 0:00:52")
    assert lines[2].startswith("epoch 1/3 step 8/10 ") and lines[3].startswith("epoch 1/3 step 10/10 ")
    assert lines[3].endswith("ETA 0:00:00 run 0:00:40")
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(steps["step"]) == [5, 10]
    assert {"step_s", "data_s", "elapsed_s", "samples_s", "peak_rss_mb", "lr", "epoch"} <= set(steps.columns)
    assert steps["step_s"].tolist() == [2.0, 2.0] and steps["data_s"].tolist() == [0.5, 0.5]
    assert steps["samples_s"].tolist() == [4.0, 4.0]
    epochs = pd.read_csv(tmp_path / "epochs.csv")
    assert epochs.loc[0, "train_s"] == 20.0 and epochs.loc[0, "data_s"] == 5.0 and epochs.loc[0, "wall_s"] >= 0


def test_terminal_bar_eta_from_the_first_step(tmp_path):
    console, buf = _console(terminal=True)
    log = RunLog(tmp_path, console=console, tensorboard=False, epochs=2, steps_per_epoch=100, samples_per_step=4)
    assert log.bar is not None and not log.lines
    log.task("epoch 1/2", 100)
    log.train_step(1, 1, 1, {"loss": 0.5}, 1e-3, step_s=3.0, data_s=0.0, row=False)
    eta = log.bar.tasks[0].fields["eta"]
    log.close()
    assert eta == "0:04:57 (run 0:09:57)"  # 99 steps left in the epoch, 199 in the run, 3 s each
    assert "epoch 1/2 step" not in buf.getvalue()  # no plain lines on a terminal


def test_inactive_log_prints_and_writes_nothing(tmp_path):
    console, buf = _console(terminal=False)
    log = RunLog(tmp_path, active=False, console=console, tensorboard=False, print_every=1, epochs=1,
                 steps_per_epoch=2, header="h")
    log.train_step(1, 1, 1, {"loss": 0.5}, 1e-3, step_s=1.0, data_s=0.0, row=True)
    log.epoch(1, {"x": 1.0}, 1)
    assert buf.getvalue() == "" and not (tmp_path / "steps.csv").exists() and not (tmp_path / "epochs.csv").exists()


def test_loader_workers_fit_the_machine(monkeypatch, caplog):
    monkeypatch.setattr(L, "usable_cpus", lambda: 3)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert L.loader_workers(0) == 0 and L.loader_workers(2) == 2
    with caplog.at_level("INFO", logger="aufer.datasets.loaders"):
        assert L.loader_workers(8) == 3 and L.loader_workers(8) == 3
    assert sum("lowered to 3" in r.getMessage() for r in caplog.records) <= 1  # said once per process
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun processes on this node share the CPUs
    assert L.loader_workers(8) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert L.loader_workers(8) == 1
    with pytest.raises(ValueError):
        L.loader_workers(-1)
    ld = L.make_loader(list(range(4)), 2, train=False, workers=8, pin_memory=True)
    assert ld.num_workers == 1
    assert ld.pin_memory == torch.accelerator.is_available()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return au_store(tmp_path_factory.mktemp("s") / "au.sqlite")


def test_cpu_fit_batch_log_and_no_dataloader_warnings(store, tmp_path, recwarn):
    """A CPU run with the base runtime's loader settings (4 workers, pin_memory) on a non-terminal console:
    plain progress lines, timing columns in both CSVs, and not one DataLoader warning."""
    rec = tiny_recipe(store, train={"epochs": 2, "log_every": 2, "print_every": 3}, data={"workers": 4,
                                                                                          "pin_memory": True})
    console, buf = _console(terminal=False)
    fit(load(values=rec), tmp_path / "run", fold="1", device="cpu", console=console)
    out = buf.getvalue().splitlines()
    print("\n".join(out))
    header = [ln for ln in out if ln.startswith("training ")]
    assert len(header) == 1 and "pin_memory off" in header[0]
    lines = [ln for ln in out if ln.startswith("epoch ") and " step " in ln]
    assert lines and all(LINE.match(ln) for ln in lines), lines
    steps_per_epoch = int(LINE.match(lines[0]).group(4))
    assert {int(LINE.match(ln).group(1)) for ln in lines} == {1, 2}
    assert sum(LINE.match(ln).group(3) == str(steps_per_epoch) for ln in lines) == 2  # each epoch's last step
    bad = [str(w.message) for w in recwarn if "pin_memory" in str(w.message) or "worker" in str(w.message)]
    assert not bad, bad
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert {"step_s", "data_s", "elapsed_s", "samples_s", "peak_rss_mb"} <= set(steps.columns)
    assert (steps["step_s"] > 0).all() and (steps["data_s"] >= 0).all() and (steps["data_s"] <= steps["step_s"]).all()
    epochs = pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert {"wall_s", "train_s", "data_s", "val_au_f1_mean", "val_au_auc_mean"} <= set(epochs.columns)
    assert (epochs["wall_s"] >= epochs["train_s"]).all() and (epochs["train_s"] >= epochs["data_s"]).all()


@pytest.mark.slow
def test_two_process_ddp_has_every_metric_of_one_process(store, tmp_path):
    """2 gloo processes under torchrun: the validation lines and epochs.csv carry the same metric columns as a
    single-process run (au_auc_mean included), with the same values on the same validation split."""
    rec = tiny_recipe(store, train={"epochs": 1, "freeze_bn": True, "print_every": 1})
    rec["data"]["au"].update({"per_sequence": 1, "batch_size": 4})  # global batch 4 in both runs
    one_yaml, two_yaml = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one_yaml.write_text(yaml.safe_dump(rec))
    rec["data"]["au"]["batch_size"] = 2
    two_yaml.write_text(yaml.safe_dump(rec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "aufer", "train", str(one_yaml), "--fold", "1", "--out",
                          str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          "29563", "-m", "aufer", "train", str(two_yaml), "--fold", "1", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    e1, e2 = (pd.read_csv(tmp_path / d / "epochs.csv") for d in ("one", "two"))
    assert "val_au_auc_mean" in e1.columns and set(e1.columns) == set(e2.columns)
    for col in (c for c in e1.columns if c.startswith("val_") or c == "score"):
        assert e2.loc[0, col] == pytest.approx(e1.loc[0, col], abs=1e-4), col
    val1 = [ln for ln in one.stdout.splitlines() if ln.startswith("epoch 1: val")]
    val2 = [ln for ln in two.stdout.splitlines() if ln.startswith("epoch 1: val")]
    assert len(val1) == len(val2) == 1 and "auc_mean" in val2[0]
    assert [w.split()[0] for w in val1[0].split(" | ")[0].split("val ")[1].split(" ")[::2]] == \
        [w.split()[0] for w in val2[0].split(" | ")[0].split("val ")[1].split(" ")[::2]]
    assert any(LINE.match(ln) for ln in two.stdout.splitlines())  # rank 0 prints progress lines (not a tty)
