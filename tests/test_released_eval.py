"""SSM's released AU evaluator (aufer.methods.ssm.released): search, vote, masking, labels and the JSON output."""

import json

import numpy as np
import pandas as pd
import pytest

from aufer import metrics
from aufer.methods.ssm import released as R


def _naive_vote(prob, seg, k, r, t):
    """Frame-by-frame vote with explicit edge padding inside each segment."""
    out = np.zeros(prob.shape, np.uint8)
    for s in np.unique(seg):
        rows = np.flatnonzero(seg == s)
        b = prob[rows] >= t
        for i in range(len(rows)):
            win = [b[min(max(i + d, 0), len(rows) - 1)] for d in range(-k, k + 1)]
            out[rows[i]] = np.sum(win, 0) >= r
    return out


def _naive_mean_f1(pred, y):
    f1 = []
    for j in range(y.shape[1]):
        known = y[:, j] >= 0
        tp = int(np.sum((pred[:, j] == 1) & (y[:, j] == 1) & known))
        fp = int(np.sum((pred[:, j] == 1) & (y[:, j] == 0) & known))
        fn = int(np.sum((pred[:, j] == 0) & (y[:, j] == 1) & known))
        f1.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
    return float(np.mean(f1)), f1


def _data(seed, n_seg=4, length=30, a=3, unknown=0.0):
    rng = np.random.default_rng(seed)
    z = np.cumsum(rng.normal(size=(n_seg * length, a)), 0) * 0.3  # temporally correlated
    y = (z + rng.normal(scale=0.5, size=z.shape) > 0).astype(np.int64)
    p = 1 / (1 + np.exp(-(z + rng.normal(scale=0.8, size=z.shape))))
    y[rng.random(y.shape) < unknown] = -1
    return p, y, np.repeat(np.arange(n_seg), length)


def test_threshold_search_hand_example():
    # thresholds 0.11..0.30 give F1 = 1 (0.30 itself: 0.3 >= 0.3); the one nearest 0.5 is kept
    p = np.array([[0.1], [0.3], [0.6], [0.8]])
    y = np.array([[0], [1], [1], [1]])
    res = R.released_au_search(p, y, np.zeros(4), half_windows=(0,))
    assert res["au_f1_mean"] == 1.0 and res["threshold"] == 0.3
    assert (res["half_window"], res["required_votes"]) == (0, 1)
    assert res["au_f1_mean_at_0.5_no_vote"] == pytest.approx(0.8)  # 0.5: TP 2, FN 1


def test_threshold_search_matches_brute_force():
    p, y, seg = _data(0)
    res = R.released_au_search(p, y, seg, half_windows=(0,))
    scores = {t: _naive_mean_f1((p >= t).astype(np.uint8), y)[0] for t in R.THRESHOLDS}
    top = max(scores.values())
    assert res["au_f1_mean"] == pytest.approx(top, abs=1e-12)
    assert res["threshold"] == min((t for t, s in scores.items() if abs(s - top) <= 1e-12),
                                   key=lambda t: (abs(t - 0.5), t))


def test_joint_search_matches_brute_force():
    p, y, seg = _data(1, n_seg=3, length=12, a=2)
    thr = (0.2, 0.35, 0.5, 0.65)
    res = R.released_au_search(p, y, seg, thresholds=thr, half_windows=(0, 1, 2))
    best = max(_naive_mean_f1(_naive_vote(p, seg, k, r, t), y)[0]
               for k in (0, 1, 2) for r in range(1, 2 * k + 2) for t in thr)
    assert res["au_f1_mean"] == pytest.approx(best, abs=1e-12)
    chosen, per_au = _naive_mean_f1(_naive_vote(p, seg, res["half_window"], res["required_votes"],
                                                 res["threshold"]), y)
    assert chosen == pytest.approx(res["au_f1_mean"], abs=1e-12)
    assert list(res["au_f1"].values()) == pytest.approx(per_au, abs=1e-12)
    lo, hi = res["p_interval"]
    assert lo < res["p"] <= hi and res["window"] == 2 * res["half_window"] + 1


def test_vote_removes_blip_keeps_runs_and_pads_edges():
    prob = np.array([0, 0, .9, 0, 0, 0, .9, .9, 0, 0, .9, 0, 0, 0])[:, None]
    seg = np.zeros(len(prob))
    out = R.temporal_vote(prob, seg, 1, 2)[:, 0]
    assert out.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]  # blips at 2 and 10 removed
    # edge padding: the first frame counts twice in its own window (0.9, 0.9, 0) -> 2 votes
    assert R.temporal_vote(np.array([[.9], [0], [0], [0]]), np.zeros(4), 1, 2)[:, 0].tolist() == [1, 0, 0, 0]
    assert R.temporal_vote(np.array([[.9]]), np.zeros(1), 3, 7)[0, 0] == 1  # one-frame segment, W = 7
    assert (R.temporal_vote(prob, seg, 0, 1) == (prob >= 0.5)).all()
    assert (R.temporal_vote(prob, seg, 1, p=0.5) == out[:, None]).all()  # r = ceil(0.5 * 3) = 2


def test_vote_never_crosses_segments():
    prob = np.array([0, 0, 0, .9, .9, .9])[:, None]
    seg = np.array([0, 0, 0, 1, 1, 1])
    assert R.temporal_vote(prob, seg, 1, 1)[:, 0].tolist() == [0, 0, 0, 1, 1, 1]  # dilation stops at the border
    assert R.temporal_vote(prob, np.zeros(6), 1, 1)[:, 0].tolist() == [0, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="contiguous"):
        R.temporal_vote(prob, np.array([0, 1, 0, 1, 1, 1]), 1, 1)


def test_vote_matches_naive_on_random_data():
    p, _, seg = _data(2, n_seg=5, length=9)
    seg[:4] = 7  # a short segment
    for k, r, t in ((0, 1, .5), (2, 3, .4), (3, 7, .6), (7, 1, .3)):
        assert (R.temporal_vote(p, seg, k, r, threshold=t) == _naive_vote(p, seg, k, r, t)).all()


def test_unknown_labels_masked_or_dropped():
    p, y, seg = _data(3, unknown=0.2)
    res = R.released_au_search(p, y, seg, half_windows=(0,))
    assert res["au_f1_mean"] == pytest.approx(max(_naive_mean_f1((p >= t).astype(np.uint8), y)[0]
                                                  for t in R.THRESHOLDS), abs=1e-12)
    p2 = p.copy()
    p2[y == -1] = 1 - p2[y == -1]  # predictions of unknown (frame, AU) pairs do not count
    assert R.released_au_search(p2, y, seg, half_windows=(0,))["au_f1_mean"] == res["au_f1_mean"]
    auc = metrics.au_auc(p, y)
    assert list(res["au_auc"].values()) == pytest.approx(auc.tolist())
    # drop: a frame with an unknown label leaves, and its segment is split there
    yd = np.ones((5, 1), np.int64)
    yd[2] = -1
    d = R.released_au_search(np.full((5, 1), .9), yd, np.zeros(5), unknown="drop")
    assert (d["n_frames"], d["n_segments"]) == (4, 2)


def test_search_never_worse_than_threshold_half_without_vote():
    for seed in range(3):
        p, y, seg = _data(10 + seed, unknown=0.05)
        res = R.released_au_search(p, y, seg)
        base = metrics.mean_f1(metrics.au_f1(p, y, 0.5), "zero")
        assert res["au_f1_mean_at_0.5_no_vote"] == pytest.approx(base, abs=1e-12)
        assert res["au_f1_mean"] >= base - 1e-12
        assert res["label"] == "test-tuned" and "scored on" in res["note"]


def test_auc_equals_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    p, y, seg = _data(4)
    res = R.released_au_search(p, y, seg, half_windows=(0,))
    assert list(res["au_auc"].values()) == pytest.approx([sk.roc_auc_score(y[:, j], p[:, j]) for j in range(3)],
                                                         abs=1e-12)


def _frames_table(p, y, seqs, frames):
    df = pd.DataFrame({"sequence": seqs, "frame": frames, "subject": "s1"})
    for j, a in enumerate((1, 2, 4)):
        df[f"AU{a:02d}_p"] = p[:, j].astype(np.float32)
        df[f"AU{a:02d}"] = y[:, j].astype(np.int8)
    return df


def test_evaluate_released_writes_test_tuned_json(tmp_path):
    p, y, _ = _data(5, n_seg=2, length=20, unknown=0.1)
    seqs = ["b"] * 20 + ["a"] * 20
    frames = list(range(20)) + list(range(10)) + list(range(15, 25))  # sequence a has a gap: 2 segments
    df = _frames_table(p, y, seqs, frames).sample(frac=1, random_state=0)  # any row order
    (tmp_path / "predictions").mkdir()
    df.to_parquet(tmp_path / "predictions" / "test_best_au_frames.parquet", index=False)
    ex = pd.DataFrame({"clip": ["c0", "c1", "c2", "c3"], "subject": "s1", "label": [0, 1, 1, -1],
                       "pred": [0, 1, 0, 1], "emo_happiness": .5, "emo_sadness": .5})
    ex.to_parquet(tmp_path / "predictions" / "test_best_expr_clips.parquet", index=False)
    (tmp_path / "metrics_test_best.json").write_text(json.dumps({"selection": "test-selected"}))

    out = R.evaluate_released(tmp_path)
    path = tmp_path / "metrics_test_best_released.json"
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(out)) and not list(tmp_path.glob("*.partial"))
    assert saved["label"] == saved["au"]["label"] == "test-tuned" and "scored on" in saved["note"]
    assert saved["selection"] == "test-selected" and saved["released_protocol"].startswith("test-selected")
    au = saved["au"]
    assert (au["n_frames"], au["n_segments"], au["n_sequences"]) == (40, 3, 2)
    assert list(au["au_f1"]) == ["AU1", "AU2", "AU4"]
    # the same figures as the search on the arrays in (sequence, frame) order
    order = np.lexsort((frames, seqs))
    seg = np.array([0] * 10 + [1] * 10 + [2] * 20)
    direct = R.released_au_search(p.astype(np.float32)[order], y[order], seg)
    assert au["au_f1_mean"] == direct["au_f1_mean"] and au["threshold"] == direct["threshold"]
    e = saved["expr"]
    assert (e["uar"], e["war"], e["n_clips"], e["equal_to_aufer"]) == (pytest.approx(0.75), pytest.approx(2 / 3),
                                                                       3, True)


def test_evaluate_released_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluate_run"):
        R.evaluate_released(tmp_path, split="val", checkpoint="last")
    p, y, _ = _data(6, n_seg=1, length=6)
    (tmp_path / "predictions").mkdir()
    # fit's file name (test, best checkpoint) is used when evaluate_run's is absent
    _frames_table(p, y, ["s"] * 6, range(6)).to_parquet(tmp_path / "predictions" / "test_au_frames.parquet")
    out = R.evaluate_released(tmp_path)
    assert out["au"]["n_segments"] == 1 and out["expr"] is None and out["label"] == "test-tuned"
    _frames_table(p, y, ["s"] * 6, range(6)).to_parquet(tmp_path / "predictions" / "val_best_au_frames.parquet")
    assert R.evaluate_released(tmp_path, split="val")["au"]["label"] == "val-tuned"
    assert (tmp_path / "metrics_val_best_released.json").is_file()
    dup = _frames_table(p, y, ["s"] * 6, [0, 1, 2, 2, 3, 4])  # one frame predicted twice
    dup.to_parquet(tmp_path / "predictions" / "val_last_au_frames.parquet")
    with pytest.raises(ValueError, match="appears twice"):
        R.evaluate_released(tmp_path, split="val", checkpoint="last")
