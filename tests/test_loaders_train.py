import numpy as np
import pytest
import torch

from aufer.synth import ClipSet
from aufer.datasets.loaders import ClipDataset, clip_loader
from aufer.faces.landmarks import mesh_mirror
from aufer.faces import landmarks as L
from aufer.engine import joint_steps, train_one_epoch


def _clipset(n=6, t=4, s=32, aus=(1, 12), au_known=True, expr=None, rng=None):
    rng = rng or np.random.default_rng(0)
    frame = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
    crops = np.broadcast_to(frame, (n, t, s, s, 3)).copy()
    lms = np.broadcast_to(rng.uniform(4, s - 4, (478, 3)).astype(np.float32), (n, t, 478, 3)).copy()
    au = rng.integers(0, 2, (n, t, len(aus))).astype(np.int8) if au_known else np.full((n, t, len(aus)), -1, np.int8)
    e = np.full(n, -1, np.int64) if expr is None else np.asarray(expr, np.int64)
    return ClipSet(crops, lms, au, au.astype(np.float32), e, np.array([f"p{i}" for i in range(n)]),
                   np.full(n, "synthetic"), np.ones((n, t), bool), tuple(aus), ("a", "b", "c"))


def test_mesh_mirror_is_a_symmetric_involution():
    m = mesh_mirror()
    assert (m[m] == np.arange(478)).all()
    assert m[L.EYE_L_OUTER] == L.EYE_R_OUTER and m[L.MOUTH_L] == L.MOUTH_R and m[L.IRIS_L] == L.IRIS_R
    assert m[L.NOSE_TIP] == L.NOSE_TIP


def test_augmentation_is_clip_consistent():
    cs = _clipset(n=1, t=5)
    ds = ClipDataset(cs, augment=True, seed=3)
    for _ in range(10):
        item = ds[0]
        frames, lms = item["crops"].numpy(), item["landmarks"].numpy()
        assert all(np.array_equal(frames[0], f) for f in frames[1:])  # identical input frames stay identical
        assert np.allclose(lms[0], lms[1:])


def test_flip_moves_landmarks_with_the_image():
    cs = _clipset(n=1, t=1, s=64)
    ds = ClipDataset(cs, augment=True, seed=0, max_rotation_deg=0, max_scale=0, max_shift=0, color=0)
    flipped = None
    for _ in range(20):
        item = ds[0]
        if not np.array_equal(item["crops"].numpy(), cs.crops[0]):
            flipped = item
            break
    assert flipped is not None
    assert np.array_equal(flipped["crops"].numpy()[0], cs.crops[0, 0, :, ::-1])
    lm = flipped["landmarks"].numpy()[0]
    src = cs.landmarks[0, 0]
    assert np.allclose(lm[:, 0], 63 - src[mesh_mirror(), 0], atol=1e-4)


def test_windows_and_labels():
    cs = _clipset(n=3, t=16)
    item = ClipDataset(cs, n_frames=4)[1]
    assert item["crops"].shape[0] == 4 and item["au"].shape == (4, 2) and item["expr"].item() == -1


def test_joint_steps_run_the_longer_loader():
    a = clip_loader(_clipset(n=10), batch_size=2)  # 5 batches
    f = clip_loader(_clipset(n=4, au_known=False, expr=[0, 1, 2, 0]), batch_size=2)  # 2 batches
    pairs = list(joint_steps(a, f))
    assert len(pairs) == 5
    assert all((fb["au"] == -1).all() and (ab["expr"] == -1).all() for ab, fb in pairs)
    assert len(list(joint_steps(f, a))) == 5


def test_joint_training_learns_both_tasks_from_disjoint_labels():
    """AU labels only on one set, expression labels only on the other: both losses fall."""
    from aufer.models import create_model

    rng = np.random.default_rng(0)
    n, s = 24, 32
    au_set = _clipset(n=n, t=2, s=s, rng=rng)
    # AU1 visible as a bright top half, AU12 as a bright bottom half
    au_set.crops[:] = 60
    au_set.crops[au_set.au[..., 0] == 1, : s // 2] = 220
    au_set.crops[au_set.au[..., 1] == 1, s // 2:] = 220
    fe_set = _clipset(n=n, t=1, s=s, au_known=False, expr=rng.integers(0, 3, n), rng=rng)
    for i, e in enumerate(fe_set.expr):
        fe_set.crops[i] = 40 + 80 * e
    torch.manual_seed(0)
    model = create_model("aufer_tiny_image", aus=(1, 12), emotions=("a", "b", "c"), input_size=s, width=8, dim=16,
                         dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    al, fl = clip_loader(au_set, 8, shuffle=True), clip_loader(fe_set, 8, shuffle=True)
    first = train_one_epoch(model, al, fl, opt)
    for _ in range(25):
        last = train_one_epoch(model, al, fl, opt)
    assert last["loss_au"] < 0.5 * first["loss_au"] and last["loss_expr"] < 0.5 * first["loss_expr"]


def test_clipset_save_load_concat(tmp_path):
    a, b = _clipset(n=2), _clipset(n=3)
    both = ClipSet.concat([a, b])
    assert len(both) == 5
    both.save(tmp_path / "x.npz")
    back = ClipSet.load(tmp_path / "x.npz")
    assert np.array_equal(back.crops, both.crops) and back.aus == both.aus and back.emotions == both.emotions
    with pytest.raises(ValueError):
        ClipSet.concat([a, _clipset(n=2, aus=(1, 2, 4))])
