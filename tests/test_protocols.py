import numpy as np
import pandas as pd
import pytest

from aufer import protocols
from aufer.readers.records import ClipRecords, FrameRecords
from aufer.protocols import Split, au_class_weights, au_folds, au_split, expression_folds, expression_split, fold_pairs

AU_DATASETS = ("BP4D", "DISFA")
NAMINGS = ("me_graphau_mdhr", "ssm")

# the fixed subject partitions of the 3-fold AU benchmarks, as published (ME-GraphAU tool/; methods.md §1.1-1.2)
PARTS = {
    "BP4D": (
        "F001 M007 F018 F008 F002 M004 F010 F009 M012 M001 F016 M014 F023 M008".split(),
        "M011 F003 M010 M002 F005 F022 M018 M017 F013 M016 F020 F011 M013 M005".split(),
        "F007 F015 F006 F019 M006 M009 F012 M003 F004 F021 F017 M015 F014".split(),
    ),
    "DISFA": (
        "SN002 SN010 SN001 SN026 SN027 SN032 SN030 SN009 SN016".split(),
        "SN013 SN018 SN011 SN028 SN012 SN006 SN031 SN021 SN024".split(),
        "SN003 SN029 SN023 SN025 SN008 SN005 SN007 SN017 SN004".split(),
    ),
}
# 0-based partition tested by folds 1, 2, 3: ME-GraphAU/MDHR fold1 tests part3; SSM the reverse
TEST_PART = {"me_graphau_mdhr": (2, 1, 0), "ssm": (0, 1, 2)}
N_SUBJECTS = {"BP4D": 41, "DISFA": 27}


# ------------------------------------------------------------------------------------------- Split
def test_split_rejects_overlap_and_bad_unit():
    Split(("a", "b"), ("c",), ("d",), "subject")
    with pytest.raises(ValueError, match="'b' appears in both train and test"):
        Split(("a", "b"), ("c",), ("b",), "subject")
    with pytest.raises(ValueError, match="twice in val"):
        Split(("a",), ("c", "c"), (), "clip")
    with pytest.raises(ValueError, match="unit"):
        Split(("a",), (), (), "frame")
    s = Split(["a"], [], ["b"], "clip")
    assert s.train == ("a",) and s.part("test") == ("b",)
    with pytest.raises(Exception):
        s.train = ("x",)  # frozen


# ----------------------------------------------------------------------------------------- AU folds
@pytest.mark.parametrize("dataset", AU_DATASETS)
@pytest.mark.parametrize("naming", NAMINGS)
def test_au_folds_are_the_published_partitions(dataset, naming):
    parts = PARTS[dataset]
    folds = au_folds(dataset, naming)
    assert sorted(folds) == [1, 2, 3]
    for fold, test_part in zip((1, 2, 3), TEST_PART[naming]):
        assert folds[fold]["test"] == tuple(parts[test_part]), f"{dataset} {naming} fold {fold}"
        # the other two partitions, in partition order
        assert folds[fold]["train"] == tuple(s for k in range(3) if k != test_part for s in parts[k])


def test_fold_namings_are_reversed_for_fold1():
    mdhr, ssm = au_folds("BP4D", "me_graphau_mdhr"), au_folds("BP4D", "ssm")
    assert "F007" in mdhr[1]["test"] and "F001" not in mdhr[1]["test"]   # part3
    assert "F001" in ssm[1]["test"] and "F007" not in ssm[1]["test"]     # part1
    assert mdhr[1]["test"] == ssm[3]["test"] and mdhr[2]["test"] == ssm[2]["test"]
    assert au_folds("disfa")[1]["test"][0] == "SN003"   # case-insensitive dataset name


@pytest.mark.parametrize("dataset", AU_DATASETS)
def test_test_partitions_disjoint_and_cover_all_subjects(dataset):
    folds = au_folds(dataset)
    tests = [set(folds[k]["test"]) for k in (1, 2, 3)]
    assert all(not (a & b) for i, a in enumerate(tests) for b in tests[i + 1:])
    everyone = set().union(*tests)
    assert len(everyone) == sum(len(t) for t in tests)
    assert len(everyone) == N_SUBJECTS[dataset]
    for k in (1, 2, 3):
        assert set(folds[k]["train"]) == everyone - set(folds[k]["test"])


def test_au_folds_errors_list_valid_choices():
    with pytest.raises(ValueError, match="BP4D.*DISFA"):
        au_folds("DFEW")
    with pytest.raises(ValueError, match="me_graphau_mdhr.*ssm"):
        au_folds("BP4D", naming="graphau")


# ----------------------------------------------------------------------------------------- AU split
@pytest.mark.parametrize("dataset", AU_DATASETS)
@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("fold", [1, 2, 3])
def test_au_split_subject_exclusive(dataset, naming, fold):
    folds = au_folds(dataset, naming)[fold]
    s = au_split(dataset, fold, naming)
    assert s.unit == "subject"
    assert s.test == folds["test"]
    assert set(s.val) <= set(folds["train"])
    assert set(s.train) | set(s.val) == set(folds["train"])
    assert not (set(s.train) & set(s.val)) and not (set(s.val) & set(s.test)) and not (set(s.train) & set(s.test))
    n_train = len(folds["train"])
    assert len(s.val) == max(1, int(np.floor(protocols.DEFAULT_VAL_SUBJECTS * n_train + 0.5)))


def test_au_split_seeded():
    a, b = au_split("BP4D", 1, seed=0), au_split("BP4D", 1, seed=0)
    assert a == b
    vals = {au_split("BP4D", 1, seed=s).val for s in range(5)}
    assert len(vals) > 1, "validation subjects do not depend on the seed"


def test_au_split_sizes_and_explicit_subjects():
    train = au_folds("DISFA")[2]["train"]
    assert len(au_split("DISFA", 2, val_subjects=5).val) == 5
    assert au_split("DISFA", 2, val_subjects=0).val == ()
    assert len(au_split("DISFA", 2, val_subjects=0.5).val) == 9  # 18 training subjects
    s = au_split("DISFA", 2, val_subjects=[train[3], train[0]])
    assert s.val == (train[0], train[3]) and train[0] not in s.train
    with pytest.raises(ValueError, match="not training subjects"):
        au_split("DISFA", 2, val_subjects=[au_folds("DISFA")[2]["test"][0]])
    with pytest.raises(ValueError, match="at least one must stay"):
        au_split("DISFA", 2, val_subjects=len(train))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        au_split("DISFA", 2, val_subjects=1.5)
    with pytest.raises(ValueError, match="folds"):
        au_split("DISFA", 4)


def _frame_records(subjects, dataset="BP4D", frames_per_subject=3):
    rows = [{"subject": s, "sequence": f"{s}/T1", "frame": i, "media": f"{s}_{i}.jpg", "media_index": -1}
            for s in subjects for i in range(frames_per_subject)]
    occ = np.zeros((len(rows), 12), np.int8)
    return FrameRecords(dataset, "/nowhere", tuple(range(12)), pd.DataFrame(rows), occ)


def test_au_split_restricts_to_records_subjects():
    folds = au_folds("BP4D")[1]
    present = list(folds["train"][:6]) + list(folds["test"][:2])
    s = au_split(_frame_records(present), 1, val_subjects=2, seed=3)
    assert set(s.train) | set(s.val) == set(folds["train"][:6])
    assert s.test == folds["test"][:2]
    assert len(s.val) == 2


def test_au_split_rejects_subject_in_no_partition():
    folds = au_folds("BP4D")[1]
    with pytest.raises(ValueError, match="X999"):
        au_split(_frame_records([folds["train"][0], "X999"]), 1)


# --------------------------------------------------------------------------------------- expressions
def _clip_records(subjects=None):
    """24 train clips (class 0: 12, class 1: 8, class 2: 4), 6 test clips, plus one unlabelled train clip."""
    labels = [0] * 12 + [1] * 8 + [2] * 4 + [0, 1, 2, 0, 1, 2] + [-1]
    clips = [f"c{i:02d}" for i in range(len(labels))]
    subj = clips if subjects is None else subjects
    table = pd.DataFrame({"clip": clips, "subject": subj, "media": [f"{c}.mp4" for c in clips], "label": labels})
    folds = {"1": {"train": clips[:24] + [clips[30]], "test": clips[24:30]},
             "2": {"train": clips[6:], "test": clips[:6]}}
    return ClipRecords("TOY", "/nowhere", ("a", "b", "c"), table, folds)


def test_expression_split_stratified_and_seeded():
    rec = _clip_records()
    s = expression_split(rec, fold=1, val_fraction=0.25, seed=0)
    assert s.unit == "clip"
    assert s.test == tuple(rec.folds["1"]["test"])
    assert set(s.train) | set(s.val) == set(rec.folds["1"]["train"])
    lab = dict(zip(rec.table["clip"], rec.table["label"]))
    val_counts = np.bincount([lab[c] for c in s.val], minlength=3)
    assert val_counts.tolist() == [3, 2, 1]          # round(0.25 * 12/8/4)
    assert "c30" in s.train                           # unlabelled clips stay in training
    assert s == expression_split(rec, fold=1, val_fraction=0.25, seed=0)
    assert len({expression_split(rec, 1, 0.25, seed=k).val for k in range(5)}) > 1


def test_expression_split_every_class_in_validation_when_possible():
    s = expression_split(_clip_records(), fold=1, val_fraction=0.05, seed=1)  # 0.05*4 rounds to 0 -> raised to 1
    lab = dict(zip(_clip_records().table["clip"], _clip_records().table["label"]))
    assert {lab[c] for c in s.val} == {0, 1, 2}
    assert {lab[c] for c in s.train} >= {0, 1, 2}
    assert expression_split(_clip_records(), fold=1, val_fraction=0.0).val == ()


def test_expression_split_by_subject():
    # 31 clips, subjects of 2 clips each; subject "s12" has train clip c23 and test clips c24, c25
    subjects = [f"s{i // 2:02d}" for i in range(31)]
    subjects[23] = "s12"
    rec = _clip_records(subjects)
    sub = dict(zip(rec.table["clip"], subjects))
    for seed in range(6):
        s = expression_split(rec, fold=1, val_fraction=0.25, seed=seed)
        parts = [{sub[c] for c in p} for p in (s.train, s.val, s.test)]
        assert not (parts[0] & parts[1]) and not (parts[1] & parts[2])
        assert s.val, "no validation clip"
        assert set(s.train) | set(s.val) == set(rec.folds["1"]["train"])
        assert "c23" in s.train                       # its subject also has test clips


def test_expression_folds_and_errors():
    rec = _clip_records()
    assert expression_folds(rec) == ["1", "2"]
    assert expression_folds({"10": {}, "2": {}, "1": {}}) == ["1", "2", "10"]
    with pytest.raises(ValueError, match=r"available folds: \['1', '2'\]"):
        expression_split(rec, fold=3)
    assert expression_split(rec, fold="2").test == tuple(rec.folds["2"]["test"])


def test_fold_pairs():
    assert fold_pairs(["1", "2", "3", "4", "5"], au_folds("BP4D")) == [(e, a) for e in "12345" for a in (1, 2, 3)]
    assert len(fold_pairs(5, 3)) == 15
    assert fold_pairs(["1"], [1, 2, 3]) == [("1", 1), ("1", 2), ("1", 3)]


# ------------------------------------------------------------------------------------------ class weights
def test_au_class_weights_hand_computed():
    occ = np.array([[1, 0, 1],
                    [0, 0, 1],
                    [1, 1, 1],
                    [0, 0, 0]], np.int8)
    r = np.array([2 / 4, 1 / 4, 3 / 4])
    w = (1 / r) / (1 / r).sum() * 3
    got = au_class_weights(occ)
    assert got.dtype == np.float64 and got.shape == (3,)
    np.testing.assert_allclose(got, w)
    np.testing.assert_allclose(got.mean(), 1.0)
    assert got[1] > got[0] > got[2]


def test_au_class_weights_ignore_unknown():
    occ = np.array([[1, -1], [0, 1], [-1, 0], [9, 0]], np.int8)   # AU0: 1 of 2 known; AU1: 1 of 3 known
    inv = np.array([2.0, 3.0])
    np.testing.assert_allclose(au_class_weights(occ), inv / inv.sum() * 2)
    # the reference script's (label > 0) over all frames would differ
    ref_rate = (occ > 0).sum(0) / len(occ)
    assert not np.allclose(au_class_weights(occ), (1 / ref_rate) / (1 / ref_rate).sum() * 2)


def test_au_class_weights_no_positive_raises():
    with pytest.raises(ValueError, match="AU4"):
        au_class_weights(np.array([[1, 0], [1, -1]]), aus=(1, 4))
    with pytest.raises(ValueError, match=r"\(N, A\)"):
        au_class_weights(np.array([1, 0, 1]))
