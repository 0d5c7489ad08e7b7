import numpy as np
import pandas as pd
import pytest

from aufer.datasets.sampling import au_windows, runs, tsn_indices


def _table(spec, shuffle_seed=None):
    """spec: {sequence: [frame numbers]} -> DataFrame, optionally with rows shuffled."""
    rows = [{"sequence": s, "frame": f} for s, frames in spec.items() for f in frames]
    t = pd.DataFrame(rows)
    if shuffle_seed is not None:
        t = t.sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)
    return t


SPEC = {
    "F001/T1": list(range(1, 41)) + list(range(50, 55)) + [60],   # runs of 40, 5 and 1 frames
    "F001/T2": list(range(0, 16)),                                   # exactly one window
    "M002/T1": list(range(100, 117)) + list(range(118, 121)),        # 17 then 3 (gap at 117)
}
RUN_LENGTHS = sorted([40, 5, 1, 16, 17, 3])


def _run_of(table):
    """Map each row position to a run id, from the frame/sequence columns alone."""
    t = table.sort_values(["sequence", "frame"])
    new = (t["sequence"] != t["sequence"].shift()) | (t["frame"] != t["frame"].shift() + 1)
    return pd.Series(new.cumsum().to_numpy(), index=t.index).reindex(table.index).to_numpy()


def test_runs_split_at_gaps_and_sequences():
    t = _table(SPEC, shuffle_seed=0)
    rs = runs(t)
    assert sorted(len(r) for r in rs) == RUN_LENGTHS
    assert sorted(np.concatenate(rs).tolist()) == list(range(len(t)))     # every row once
    for r in rs:
        assert t["sequence"].iloc[r].nunique() == 1
        assert np.all(np.diff(t["frame"].to_numpy()[r]) == 1)
    assert runs(t.iloc[:0]) == []


def test_runs_same_frames_in_two_sequences_do_not_merge():
    t = _table({"a": [1, 2, 3], "b": [4, 5, 6]})   # a ends at 3, b starts at 4: still two runs
    assert [len(r) for r in runs(t)] == [3, 3]


def test_runs_rejects_duplicate_frames():
    with pytest.raises(ValueError, match="appears twice"):
        runs(_table({"a": [1, 2, 2, 3]}))


def test_test_windows_cover_every_frame_once_and_never_cross_gaps():
    t = _table(SPEC, shuffle_seed=1)
    idx, valid = au_windows(t, length=16, train=False)
    assert idx.dtype == np.int64 and valid.dtype == bool and idx.shape == valid.shape and idx.shape[1] == 16
    assert sorted(idx[valid].tolist()) == list(range(len(t)))             # each labelled frame exactly once
    # 40 -> 3 windows, 5 -> 1, 1 -> 1, 16 -> 1, 17 -> 2, 3 -> 1
    assert len(idx) == 9
    run_id = _run_of(t)
    frames = t["frame"].to_numpy()
    for i, v in zip(idx, valid):
        assert len(set(run_id[i])) == 1, "window crosses a gap"
        assert np.all(np.diff(frames[i[v]]) == 1)
        assert v[0] and np.all(np.diff(v.astype(int)) <= 0), "padding must come at the end"
        assert np.all(i[~v] == i[v][-1]), "padding repeats the last valid frame"


def test_padding_flags_for_short_run():
    t = _table({"s": [7, 8, 9]})
    idx, valid = au_windows(t, length=5, train=False)
    assert idx.tolist() == [[0, 1, 2, 2, 2]]
    assert valid.tolist() == [[True, True, True, False, False]]
    idx_tr, valid_tr = au_windows(t, length=5, train=True, rng=0)
    assert idx_tr.tolist() == idx.tolist() and valid_tr.tolist() == valid.tolist()


def test_training_windows_within_runs_and_cover_each_epoch():
    t = _table(SPEC, shuffle_seed=2)
    run_id = _run_of(t)
    frames = t["frame"].to_numpy()
    rng = np.random.default_rng(0)
    starts_seen = set()
    for _ in range(20):
        idx, valid = au_windows(t, length=16, train=True, rng=rng)
        for i, v in zip(idx, valid):
            assert len(set(run_id[i])) == 1, "window crosses a gap"
            assert np.all(np.diff(frames[i[v]]) == 1)
            if not v.all():   # only runs shorter than the window are padded
                assert np.bincount(run_id)[run_id[i[0]]] < 16
        assert set(idx[valid].tolist()) == set(range(len(t)))             # every frame seen each epoch
        assert len(idx) <= sum(-(-n // 16) + 1 for n in RUN_LENGTHS)      # about ceil(L/16) per run
        in_long_run = t["sequence"].to_numpy()[idx[:, 0]] == "F001/T1"
        starts_seen.update(int(f) for f in frames[idx[in_long_run, 0]] if f <= 40)
    assert len(starts_seen) > 3, "training windows do not move between epochs"


def test_training_windows_deterministic_for_seed():
    t = _table(SPEC)
    a = au_windows(t, 16, True, np.random.default_rng(5))
    b = au_windows(t, 16, True, np.random.default_rng(5))
    c = au_windows(t, 16, True, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], au_windows(t, 16, True, np.random.default_rng(k))[0]) for k in range(6, 12))
    assert c[0].shape[1] == 16


def test_windows_errors_and_empty():
    with pytest.raises(ValueError):
        au_windows(_table({"s": [1]}), length=0)
    idx, valid = au_windows(_table({"s": [1]}).iloc[:0], length=4, train=False)
    assert idx.shape == (0, 4) and valid.shape == (0, 4)


# --------------------------------------------------------------------------------------------- TSN
@pytest.mark.parametrize("n", [1, 3, 15, 16, 17, 31, 100, 257])
def test_tsn_in_range_and_sorted(n):
    rng = np.random.default_rng(0)
    for train in (False, True):
        for _ in range(5):
            idx = tsn_indices(n, 16, train=train, rng=rng)
            assert idx.shape == (16,) and idx.dtype == np.int64
            assert idx.min() >= 0 and idx.max() < n
            assert np.all(np.diff(idx) >= 0)


def test_tsn_test_centres():
    idx = tsn_indices(160, 16)
    assert idx.tolist() == [5 + 10 * k for k in range(16)]
    # DFER code bases: int(tick/2 + tick*k), tick = n/S
    n = 75
    tick = n / 16
    assert tsn_indices(n, 16).tolist() == [int(tick / 2 + tick * k) for k in range(16)]


def test_tsn_train_random_within_segments():
    n, s = 100, 16
    rng = np.random.default_rng(1)
    draws = np.stack([tsn_indices(n, s, train=True, rng=rng) for _ in range(300)])
    for k in range(s):
        lo, hi = k * n / s, (k + 1) * n / s
        assert np.all(draws[:, k] >= np.floor(lo)) and np.all(draws[:, k] < hi)
        assert len(np.unique(draws[:, k])) >= 5, "no random offset within the segment"
    assert draws[:, -1].max() == n - 1                                      # tail frames reachable
    a = tsn_indices(n, s, train=True, rng=np.random.default_rng(3))
    assert np.array_equal(a, tsn_indices(n, s, train=True, rng=np.random.default_rng(3)))


def test_tsn_short_clip_repeats_frames_evenly():
    for n in (1, 3, 5, 7, 15):
        for train in (False, True):
            idx = tsn_indices(n, 16, train=train, rng=0)
            counts = np.bincount(idx, minlength=n)
            assert np.all(counts >= 16 // n) and np.all(counts <= -(-16 // n)), (n, counts)
            assert set(idx.tolist()) == set(range(n))
    assert tsn_indices(3, 16).tolist() == [0] * 5 + [1] * 6 + [2] * 5
    assert tsn_indices(1, 4, train=True, rng=0).tolist() == [0, 0, 0, 0]


def test_tsn_errors():
    with pytest.raises(ValueError, match="at least one frame"):
        tsn_indices(0)
    with pytest.raises(ValueError):
        tsn_indices(10, 0)


# ------------------------------------------------------------------------------------------- stride
def test_test_windows_with_stride():
    t = _table({"s": list(range(22))})
    idx, valid = au_windows(t, length=16, train=False, stride=4)
    assert idx[:, 0].tolist() == [0, 4, 8]  # two full windows, then one padded tail for frames 20, 21
    assert valid[:2].all() and valid[2].sum() == 14
    assert set(idx[valid].tolist()) == set(range(22))
    same = au_windows(t, length=16, train=False)
    assert np.array_equal(same[0], au_windows(t, length=16, train=False, stride=16)[0])
    assert au_windows(_table({"s": list(range(20))}), 16, False, stride=4)[0][:, 0].tolist() == [0, 4]


def test_training_windows_with_stride_cover_each_run():
    t = _table(SPEC, shuffle_seed=3)
    run_id = _run_of(t)
    rng = np.random.default_rng(0)
    for _ in range(10):
        idx, valid = au_windows(t, length=16, train=True, rng=rng, stride=8)
        assert set(idx[valid].tolist()) == set(range(len(t)))
        for i in idx:
            assert len(set(run_id[i])) == 1
        long = idx[t["sequence"].to_numpy()[idx[:, 0]] == "F001/T1"]
        starts = np.sort(t["frame"].to_numpy()[long[:, 0]])
        starts = starts[starts <= 40]
        assert np.all(np.diff(starts) <= 8)  # starts at most one stride apart
    a = au_windows(t, 16, True, np.random.default_rng(5), stride=16)
    b = au_windows(t, 16, True, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0])  # the default stride is the window length


@pytest.mark.parametrize("stride", [0, 17])
def test_stride_outside_range(stride):
    with pytest.raises(ValueError, match="stride"):
        au_windows(_table({"s": [1, 2]}), length=16, stride=stride)
