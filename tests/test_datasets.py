"""aufer.datasets: clip-consistent transforms, the item schema, store datasets, the epoch sampler, joint loading
with exact mid-epoch resume, and clip-level mixup."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, Dataset

from aufer.datasets.batch import ITEM_KEYS, collate, make_item
from aufer.datasets.clips import ExprClipDataset
from aufer.datasets.loaders import EpochSampler, JointLoader, joint_steps, make_loader, store_loader, union_aus
from aufer.datasets.mixup import clip_mixup
from aufer.datasets.transforms import ClipTransform, _random_resized_box, transform_clip
from aufer.datasets.windows import AUWindowDataset
from aufer.faces import landmarks as L
from aufer.faces.landmarks import mesh_mirror
from aufer.store.facestore import FaceStore
from aufer.synth import ClipSet

STILL = dict(rotation=0.0, scale=0.0, shift=0.0, brightness=0.0, contrast=0.0, saturation=0.0)


def _clipset(n=6, t=4, s=32, aus=(1, 12), au_known=True, expr=None, rng=None):
    rng = rng or np.random.default_rng(0)
    frame = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
    crops = np.broadcast_to(frame, (n, t, s, s, 3)).copy()
    crops[:, :, 0, 0, 0] = np.arange(n)[:, None]  # clips differ (one pixel), frames within a clip do not
    lms = np.broadcast_to(rng.uniform(4, s - 4, (478, 3)).astype(np.float32), (n, t, 478, 3)).copy()
    au = rng.integers(0, 2, (n, t, len(aus))).astype(np.int8) if au_known else np.full((n, t, len(aus)), -1, np.int8)
    e = np.full(n, -1, np.int64) if expr is None else np.asarray(expr, np.int64)
    return ClipSet(crops, lms, au, au.astype(np.float32), e, np.array([f"p{i}" for i in range(n)]),
                   np.full(n, "synthetic"), np.ones((n, t), bool), tuple(aus), ("a", "b", "c"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """An AU store (6 sequences of 10 frames) and an expression store (5 clips of 6 frames), 32-pixel PNG crops."""
    root = tmp_path_factory.mktemp("ds")
    au_store = FaceStore(root / "au.sqlite", "a", crop_size=32, codec="png")
    au_rec = _clipset(n=6, t=10).to_store(au_store, "au", "au")
    ex_store = FaceStore(root / "ex.sqlite", "a", crop_size=32, codec="png")
    ex_rec = _clipset(n=5, t=6, au_known=False, expr=[0, 1, 2, 0, 1]).to_store(ex_store, "ex", "expr")
    return au_store, au_rec, ex_store, ex_rec


def _clip(t=5, s=64, seed=0):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 255, (s, s, 3), dtype=np.uint8)
    return np.repeat(frame[None], t, 0), np.repeat(rng.uniform(10, s - 10, (1, 478, 3)).astype(np.float32), t, 0)


# ------------------------------------------------------------------------------------------- transforms
def test_mesh_mirror_is_a_symmetric_involution():
    m = mesh_mirror()
    assert (m[m] == np.arange(478)).all()
    assert m[L.EYE_L_OUTER] == L.EYE_R_OUTER and m[L.MOUTH_L] == L.MOUTH_R and m[L.IRIS_L] == L.IRIS_R
    assert m[L.NOSE_TIP] == L.NOSE_TIP


@pytest.mark.parametrize("tf", [ClipTransform(), ClipTransform(size=48, resize=72, crop="random"),
                                ClipTransform(size=56, crop="random_resized", brightness=0.4, contrast=0.4)])
def test_transform_is_clip_consistent(tf):
    crops, lms = _clip()
    for seed in range(5):
        out, lo = tf(crops, lms, np.random.default_rng(seed))
        assert out.shape == (5, tf.size or 64, tf.size or 64, 3) and out.dtype == np.uint8 and lo.dtype == np.float32
        assert all(np.array_equal(out[0], f) for f in out[1:])  # identical input frames stay identical
        assert np.allclose(lo[0], lo[1:])
    a, _ = tf(crops, lms, np.random.default_rng(1))
    b, _ = tf(crops, lms, np.random.default_rng(1))
    assert np.array_equal(a, b)  # a function of the generator only


def test_flip_moves_landmarks_with_the_image():
    crops, lms = _clip(t=2, s=64)
    out, lo = ClipTransform(hflip=1.0, **STILL)(crops, lms, np.random.default_rng(0))
    assert np.array_equal(out, crops[:, :, ::-1])
    assert np.allclose(lo[:, :, 0], 63 - lms[:, mesh_mirror(), 0], atol=1e-4)
    assert np.allclose(lo[:, :, 1:], lms[:, mesh_mirror(), 1:], atol=1e-4)
    same, ls = ClipTransform(hflip=0.0, **STILL)(crops, lms, np.random.default_rng(0))
    assert same is crops and ls is lms  # the identity returns its inputs


@pytest.mark.parametrize("tf", [ClipTransform(size=48), ClipTransform(size=40, resize=48, crop="random", rotation=10),
                                ClipTransform(size=48, resize=72, crop="random_resized", hflip=0.5)])
def test_landmarks_follow_the_image_content(tf):
    """A bright blob at the landmarks' point ends up where the transformed landmarks say (all 478 points at the
    same place, so the flip's index permutation does not matter)."""
    s = 64
    for seed in range(6):
        p = np.array([29.0 + seed, 35.0 - seed])
        yy, xx = np.mgrid[:s, :s]
        blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.0 ** 2))
        img = np.repeat((blob * 250).astype(np.uint8)[..., None], 3, -1)
        lms = np.zeros((1, 478, 3), np.float32)
        lms[..., :2] = p
        out, lo = dataclasses.replace(tf, brightness=0, contrast=0, saturation=0)(img[None], lms, np.random.default_rng(seed))
        w = out[0, ..., 0].astype(np.float64)
        oy, ox = np.mgrid[:w.shape[0], :w.shape[1]]
        centroid = np.array([(w * ox).sum(), (w * oy).sum()]) / w.sum()
        assert np.allclose(centroid, lo[0, 0, :2], atol=0.5), (seed, centroid, lo[0, 0, :2])


def test_random_resized_box_bounds():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x0, y0, w, h = _random_resized_box(256, (0.8, 1.0), (0.9, 1.1), rng)
        assert 0 <= x0 and 0 <= y0 and x0 + w <= 256 and y0 + h <= 256
        assert 0.8 - 0.01 <= w * h / 256 ** 2 <= 1.0 and 0.9 - 0.01 <= w / h <= 1.1 + 0.01
    x0, y0, w, h = _random_resized_box(100, (0.999, 1.0), (2.0, 3.0), rng)  # never fits: centred fallback
    assert (w, h) == (100, 50) and (x0, y0) == (0, 25)


def test_random_resized_crop_maps_into_the_image():
    tf = ClipTransform(size=24, resize=40, crop="random_resized", **STILL, hflip=0.0)
    for seed in range(50):
        m, flip = tf.matrix(32, np.random.default_rng(seed))
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
        corners = inv @ np.array([[-0.5, -0.5, 1], [23.5, -0.5, 1], [-0.5, 23.5, 1], [23.5, 23.5, 1]]).T
        assert not flip and corners[:2].min() >= -0.5 - 1e-9 and corners[:2].max() <= 31.5 + 1e-9
        area = np.prod(corners[:2].max(1) - corners[:2].min(1)) / 32 ** 2
        assert 0.79 <= area <= 1.0 + 1e-9
    out, _ = tf(*_clip(t=3, s=32), np.random.default_rng(0))
    assert out.shape == (3, 24, 24, 3)


def test_center_and_random_crops_are_exact_windows():
    crops, lms = _clip(t=2, s=32)
    centre = ClipTransform(size=24, test_crop="center")
    out, lo = centre(crops, lms, None)  # evaluation: resize (to 32: a no-op) + centre crop 24
    assert np.array_equal(out, crops[:, 4:28, 4:28])
    assert np.allclose(lo[..., :2], lms[..., :2] - 4, atol=1e-4)
    train_centre, _ = ClipTransform(size=24, crop="center", hflip=0.0, **STILL)(crops, lms, np.random.default_rng(0))
    assert np.array_equal(train_centre, out)
    for seed in range(5):
        rnd, lr = ClipTransform(size=24, crop="random", hflip=0.0, **STILL)(crops, lms, np.random.default_rng(seed))
        dx, dy = np.round(lms[0, 0, :2] - lr[0, 0, :2]).astype(int)
        assert 0 <= dx <= 8 and 0 <= dy <= 8 and np.array_equal(rnd, crops[:, dy:dy + 24, dx:dx + 24])
    resized, lr = ClipTransform(size=16)(crops, lms, None)  # MDHR test: the whole crop resized
    assert resized.shape == (2, 16, 16, 3)
    assert np.allclose(lr[..., :2], lms[..., :2] * 0.5 + (0.25 - 0.5), atol=1e-4)


def test_resize_then_centre_crop_at_evaluation():
    crops, lms = _clip(t=1, s=64)
    out, lo = ClipTransform(size=28, resize=32, test_crop="center")(crops, lms, None)
    assert out.shape == (1, 28, 28, 3)
    assert np.allclose(lo[..., :2], lms[..., :2] * 0.5 + (0.25 - 0.5) - 2, atol=1e-4)


def test_colour_jitter_in_range_and_consistent():
    crops = np.full((3, 16, 16, 3), 100, np.uint8)
    lms = np.zeros((3, 478, 3), np.float32)
    tf = ClipTransform(hflip=0.0, rotation=0, scale=0, shift=0, brightness=0.4, contrast=0.0, saturation=0.0)
    seen = set()
    for seed in range(20):
        out, _ = tf(crops, lms, np.random.default_rng(seed))
        assert (out == out[0, 0, 0, 0]).all()  # uniform grey stays uniform, every frame alike
        assert 60 <= int(out[0, 0, 0, 0]) <= 140
        seen.add(int(out[0, 0, 0, 0]))
    assert len(seen) > 5
    grey = ClipTransform(saturation=1.0, brightness=0, contrast=0, hflip=0, rotation=0, scale=0, shift=0)
    col = np.zeros((1, 8, 8, 3), np.uint8)
    col[..., 0] = 200
    outs = [grey(col, lms[:1], np.random.default_rng(k))[0] for k in range(30)]
    assert any(abs(int(o[0, 0, 0, 0]) - int(o[0, 0, 0, 1])) < 60 for o in outs)  # desaturated towards grey


@pytest.mark.parametrize("field, value", [("crop", "zoom"), ("test_crop", "random"), ("hflip", 1.5), ("rotation", -1),
                                          ("scale", 1.0), ("brightness", 2.0), ("crop_scale", (0.9, 0.5)),
                                          ("crop_scale", (0.5, 1.2)), ("crop_ratio", (0, 1)), ("crop_ratio", "wide"),
                                          ("size", 0), ("resize", 12.5), ("size", True)])
def test_invalid_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"ClipTransform.{field}"):
        ClipTransform(**{field: value})


def test_invalid_crop_size_and_from_dict():
    crops, lms = _clip(t=1, s=32)
    with pytest.raises(ValueError, match="crop='random'"):
        ClipTransform(size=40, crop="random")(crops, lms, np.random.default_rng(0))
    with pytest.raises(ValueError, match="test_crop='center'"):
        ClipTransform(size=40, test_crop="center")(crops, lms, None)
    with pytest.raises(ValueError, match="crops must be"):
        ClipTransform()(crops[..., :1], lms, None)
    tf = ClipTransform.from_dict({"size": 24, "crop": "random_resized", "crop_scale": [0.8, 1.0]})
    assert tf.crop_scale == (0.8, 1.0) and tf.size == 24
    with pytest.raises(ValueError, match="unknown ClipTransform field"):
        ClipTransform.from_dict({"rotate": 4})


def test_transform_clip_is_the_default_recipe():
    crops, lms = _clip(t=2, s=64)
    a, la = transform_clip(crops, lms, 56, np.random.default_rng(3))
    b, lb = ClipTransform(size=56)(crops, lms, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, _ = transform_clip(crops, lms, None, np.random.default_rng(3), flip=False, color=0.0, max_rotation_deg=0,
                          max_scale=0, max_shift=0)
    assert c is crops


# ----------------------------------------------------------------------------------- schema and datasets
def _check_schema(item, t, a):
    assert tuple(item) == ITEM_KEYS
    dtypes = {"crops": torch.uint8, "landmarks": torch.float32, "au": torch.int64, "expr": torch.int64,
              "valid": torch.bool, "detected": torch.bool, "rows": torch.int64, "index": torch.int64}
    for k, d in dtypes.items():
        assert item[k].dtype == d, k
    assert item["crops"].shape[0] == item["landmarks"].shape[0] == t and item["au"].shape == (t, a)
    assert item["expr"].shape == () and item["index"].shape == () and item["rows"].shape == (t,)


def test_one_item_schema_for_both_datasets(stores):
    au_store, au_rec, ex_store, ex_rec = stores
    w = AUWindowDataset(au_store, au_rec, length=4, train=False)
    _check_schema(w[0], 4, 2)
    assert int(w[0]["expr"]) == -1 and (w[0]["rows"] >= 0).all() and w.sequence(0) == "au/00000"
    e = ExprClipDataset(ex_store, ex_rec, num_segments=3, aus=(1, 12))
    _check_schema(e[1], 3, 2)
    assert (e[1]["rows"] == -1).all() and (e[1]["au"] == -1).all() and int(e[1]["expr"]) == 1
    assert e.sequence(1) == "ex/00001"
    batch = collate([w[0], w[1]])
    assert batch["crops"].shape == (2, 4, 32, 32, 3) and batch["index"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="disagree on keys"):
        collate([w[0], {"crops": w[0]["crops"]}])
    with pytest.raises(ValueError, match="frames"):
        make_item(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((3, 478, 3)), np.zeros((2, 0)), -1)


def test_datasets_take_a_transform(stores):
    au_store, au_rec, ex_store, ex_rec = stores
    tf = ClipTransform(size=24, resize=32, crop="random_resized", test_crop="center", **STILL)
    tr = AUWindowDataset(au_store, au_rec, length=4, train=True, transform=tf, seed=2)
    assert tr[0]["crops"].shape == (4, 24, 24, 3) and tr.out_size == 24
    ev = ExprClipDataset(ex_store, ex_rec, num_segments=2, transform=dataclasses.replace(tf, size=None), out_size=20)
    assert ev[0]["crops"].shape == (2, 20, 20, 3)
    assert AUWindowDataset(au_store, au_rec, length=4, out_size=16)[0]["crops"].shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="out_size"):
        AUWindowDataset(au_store, au_rec, length=4, out_size=16, transform=tf)
    a, b = tr[3], tr[3]
    assert torch.equal(a["crops"], b["crops"])  # augmentation is a function of (seed, epoch, index)


def test_au_window_stride(stores):
    au_store, au_rec, _, _ = stores
    dense = AUWindowDataset(au_store, au_rec, length=4, stride=2, train=False)
    plain = AUWindowDataset(au_store, au_rec, length=4, train=False)
    assert len(plain) == 6 * 3 and len(dense) == 6 * 4  # 10 frames: starts 0,4,8 vs 0,2,4,6
    seen = np.concatenate([dense[i]["rows"].numpy()[dense[i]["valid"].numpy()] for i in range(len(dense))])
    assert set(seen.tolist()) == set(range(len(au_rec)))
    with pytest.raises(ValueError, match="stride"):
        AUWindowDataset(au_store, au_rec, length=4, stride=5)


# ------------------------------------------------------------------------------------------------ sampler
class _Toy(Dataset):
    """``n`` items ``{"index": i}``; with ``grow``, ``set_epoch(e)`` makes it ``n + e`` long (as AU windows)."""

    def __init__(self, n, grow=False):
        self.n0, self.grow, self.n = n, grow, n

    def set_epoch(self, epoch):
        self.n = self.n0 + epoch if self.grow else self.n0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return {"index": torch.tensor(i)}


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    ds = _Toy(20)
    a, b = EpochSampler(ds, shuffle=True, seed=3), EpochSampler(ds, shuffle=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) == list(a)  # repeatable, and iterating twice gives the same order
    assert sorted(a) == list(range(20))
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(EpochSampler(ds, shuffle=False)) == list(range(20))
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(ds, shuffle=True, rank=2, world_size=2)


@pytest.mark.parametrize("n", [10, 11, 12, 3])
def test_epoch_sampler_pads_and_partitions_ranks(n):
    ds = _Toy(n)
    parts = []
    for r in range(4):
        s = EpochSampler(ds, shuffle=True, seed=1, rank=r, world_size=4)
        s.set_epoch(5)
        parts.append(list(s))
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // 4)  # same count on every rank
    flat = sum(parts, [])
    assert set(flat) == set(range(n)) and len(flat) - n == (-n) % 4  # every index, padding only to the multiple
    two = [list(EpochSampler(ds, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert set(two[0] + two[1]) == set(range(n)) and two[0][0] == 0 and two[1][0] == 1
    cut = [list(EpochSampler(ds, shuffle=True, rank=r, world_size=4, drop_last=True)) for r in range(4)]
    assert all(len(c) == n // 4 for c in cut) and len(set(sum(cut, []))) == (n // 4) * 4


def test_epoch_sampler_set_start_and_changing_length():
    ds = _Toy(10, grow=True)
    s = EpochSampler(ds, shuffle=True, seed=0)
    full = list(s)
    s.set_start(4)
    assert list(s) == full[4:]
    assert list(s) == full  # the start applies to one iteration only
    s.set_start(10)
    assert list(s) == []
    with pytest.raises(ValueError, match="start"):
        s.set_start(11)
    ds.set_epoch(3)
    s.set_epoch(3)
    assert len(s) == 13 and sorted(s) == list(range(13))


# ------------------------------------------------------------------------------------------ joint loading
def _indices(pairs):
    return [tuple(None if b is None else tuple(b["index"].tolist()) for b in p) for p in pairs]


@pytest.mark.parametrize("n_au, n_ex, grow", [(23, 9, True), (7, 20, False), (12, 12, False), (10, 3, False)])
@pytest.mark.parametrize("world_size", [1, 2])
def test_joint_loader_resumes_exactly(n_au, n_ex, grow, world_size):
    """Iterating from set_epoch(e, start_step=k) yields exactly steps k.. of the uninterrupted epoch, for the
    longer and the shorter loader, on every rank; every rank runs the same number of steps."""
    for epoch in (0, 2):
        per_rank = []
        for rank in range(world_size):
            au = make_loader(_Toy(n_au, grow), 2, train=True, seed=0, rank=rank, world_size=world_size)
            ex = make_loader(_Toy(n_ex), 3, train=True, seed=1, rank=rank, world_size=world_size, drop_last=False)
            joint = JointLoader(au, ex)
            joint.set_epoch(epoch)
            full = _indices(joint)
            assert len(full) == len(joint)
            per_rank.append(len(full))
            for k in range(len(full) + 1):
                joint.set_epoch(epoch, start_step=k)
                assert _indices(joint) == full[k:], (rank, k)
            joint.set_epoch(epoch)
            assert _indices(joint) == full  # positioning does not leak into the next epoch's iteration
            with pytest.raises(ValueError, match="start_step"):
                joint.set_epoch(epoch, start_step=len(full) + 1)
        assert len(set(per_rank)) == 1


def test_joint_steps_run_the_longer_loader_and_restart_the_shorter():
    a = make_loader(_Toy(10), 2, train=False)  # 5 batches
    f = make_loader(_Toy(4), 2, train=False)  # 2 batches
    pairs = _indices(joint_steps(a, f))
    assert len(pairs) == 5 and [p[1] for p in pairs] == [(0, 1), (2, 3), (0, 1), (2, 3), (0, 1)]
    assert len(list(joint_steps(f, a))) == 5


def test_single_task_joint_loader():
    au = make_loader(_Toy(5), 2, train=True)
    only_au = JointLoader(au, None)
    only_au.set_epoch(1, start_step=1)
    steps = list(only_au)
    assert len(only_au) == 2 and len(steps) == 1 and steps[0][1] is None
    only_ex = JointLoader(None, make_loader(_Toy(5), 2, train=False))
    assert [p[0] for p in only_ex] == [None] * 3
    with pytest.raises(ValueError, match="at least one"):
        JointLoader(None, None)
    empty = JointLoader(make_loader(_Toy(1), 2, train=True), make_loader(_Toy(5), 2, train=True))
    with pytest.raises(ValueError, match="no batches"):
        list(empty)


def test_joint_loader_refreshes_concat_datasets():
    a, b = _Toy(5, grow=True), _Toy(4, grow=True)
    cat = ConcatDataset([a, b])
    joint = JointLoader(make_loader(cat, 2, train=True), make_loader(_Toy(3), 1, train=True))
    joint.set_epoch(3)
    assert a.n == 8 and b.n == 7 and len(cat) == 15
    seen = sorted(i for au, _ in joint for i in au["index"].tolist())
    assert len(seen) == 14  # 7 full batches of the 15 items, each looked up without IndexError


def test_store_datasets_resume_exactly(stores):
    """The real datasets: windows change with the epoch; a resumed epoch gives the same items, pixels included."""
    au_store, au_rec, ex_store, ex_rec = stores
    au_ds = AUWindowDataset(au_store, au_rec, length=4, train=True, seed=0)
    lens = set()
    for e in range(6):
        au_ds.set_epoch(e)
        lens.add(len(au_ds))
    assert len(lens) > 1  # the number of training windows changes between epochs
    ex_ds = ExprClipDataset(ex_store, ex_rec, num_segments=2, train=True, aus=au_rec.aus)
    joint = JointLoader(make_loader(au_ds, 4, train=True), make_loader(ex_ds, 2, train=True))
    joint.set_epoch(4)
    full = list(joint)
    k = 2
    joint.set_epoch(4, start_step=k)
    rest = list(joint)
    assert len(rest) == len(full) - k
    for (a0, e0), (a1, e1) in zip(full[k:], rest):
        for x, y in ((a0, a1), (e0, e1)):
            assert x.keys() == y.keys() and all(torch.equal(x[key], y[key]) for key in x)
    assert au_ds.epoch == ex_ds.epoch == 4


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(stores):
    """Workers (re-created per epoch, each with its own store connection) see the dataset's epoch and the
    sampler's start: the same batches as main-process loading, resumed or not."""
    au_store, au_rec, _, _ = stores
    ds = AUWindowDataset(au_store, au_rec, length=4, train=True, seed=3)
    got = {}
    for workers in (0, 2):
        ld = make_loader(ds, 3, train=True, workers=workers, seed=5)
        joint = JointLoader(ld, None)
        joint.set_epoch(2, start_step=1)
        got[workers] = [b["crops"].sum().item() for b, _ in joint] + [len(ds)]
    assert got[0] == got[2] and len(got[0]) > 2


def test_store_loader_is_compatible(stores):
    au_store, au_rec, _, _ = stores
    ds = AUWindowDataset(au_store, au_rec, length=4, train=False)
    ld = store_loader(ds, batch_size=4)
    assert isinstance(ld.sampler, EpochSampler) and not ld.sampler.shuffle and not ld.drop_last
    assert torch.cat([b["index"] for b in ld]).tolist() == list(range(len(ds)))
    assert union_aus((12, 1), (2, 1)) == (1, 2, 12)


# ------------------------------------------------------------------------------------------------- mixup
def test_clip_mixup_one_lambda_per_clip():
    b, t = 6, 3
    crops = torch.randn(b, t, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    au = torch.arange(b).view(b, 1, 1).expand(b, t, 2).clone()  # labels name the clip
    mixed, ya, yb, lam = clip_mixup(crops, au, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert lam.shape == (b,) and lam.dtype == torch.float32 and ((lam >= 0) & (lam <= 1)).all()
    assert torch.equal(ya, au)
    perm = yb[:, 0, 0]
    assert sorted(perm.tolist()) == list(range(b))  # a permutation of the batch
    assert (yb == perm.view(b, 1, 1)).all()  # the partner's labels for every frame
    expect = lam.view(b, 1, 1, 1, 1) * crops + (1 - lam.view(b, 1, 1, 1, 1)) * crops[perm]
    assert torch.allclose(mixed, expect, atol=1e-6)  # the same λ for all T frames
    again = clip_mixup(crops, au, alpha=0.4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again[0], mixed) and torch.equal(again[3], lam)
    lams = torch.cat([clip_mixup(crops, au, 0.4, torch.Generator().manual_seed(s))[3] for s in range(50)])
    assert (lams < 0.1).float().mean() > 0.15 and (lams > 0.9).float().mean() > 0.15  # Beta(0.4, 0.4): U-shaped
    with pytest.raises(ValueError, match="alpha"):
        clip_mixup(crops, au, alpha=0)
    with pytest.raises(ValueError, match="float"):
        clip_mixup(crops.to(torch.uint8), au)


# ----------------------------------------------------------------------------------------------- ClipSet
def test_clipset_save_load_concat(tmp_path):
    a, b = _clipset(n=2), _clipset(n=3)
    both = ClipSet.concat([a, b])
    assert len(both) == 5
    both.save(tmp_path / "x.npz")
    back = ClipSet.load(tmp_path / "x.npz")
    assert np.array_equal(back.crops, both.crops) and back.aus == both.aus and back.emotions == both.emotions
    with pytest.raises(ValueError):
        ClipSet.concat([a, _clipset(n=2, aus=(1, 2, 4))])
