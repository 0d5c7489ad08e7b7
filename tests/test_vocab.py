import json
from importlib import resources

import numpy as np
import pytest

from aufer import vocab
from aufer.methods.ssm.vocab import ssm_prior
from aufer.methods.au_dfer.vocab import au_dfer_pos_weight, au_dfer_weights


def test_reference_files_carry_provenance():
    for name in ("protocols", "facs_priors", "au_dfer", "label_stats"):
        ref = vocab.reference(name)
        assert any(k.startswith("_") for k in ref), f"{name}.json lost its provenance note"


def test_au_names_and_codes():
    assert vocab.au_name(12) == "lip corner puller"
    assert vocab.au_code(1) == "AU01" and vocab.au_code(26) == "AU26"
    assert vocab.au_region(1) == "brow" and vocab.au_region(26) == "jaw"
    with pytest.raises(KeyError, match="AU99"):
        vocab.au_name(99)


def test_dataset_aus_follow_protocols():
    assert vocab.dataset_aus("BP4D") == (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    assert vocab.dataset_aus("disfa") == tuple(vocab.reference("protocols")["DISFA"]["aus"])
    assert len(vocab.dataset_aus("OpenFace")) == 18
    with pytest.raises(KeyError, match="unknown dataset"):
        vocab.dataset_aus("CK+")


def test_emotion_sets():
    assert vocab.emotions(7)[:3] == ("happiness", "sadness", "neutral")
    assert len(vocab.emotions(11)) == 11 and vocab.emotions(11)[:7] == vocab.emotions(7)
    assert vocab.canonical_emotion("Angry") == "anger"
    with pytest.raises(ValueError):
        vocab.emotions(8)


@pytest.mark.parametrize("ds,n", [("BP4D", 7), ("BP4D", 11), ("DISFA", 7), ("DISFA", 11)])
def test_ssm_prior_structure(ds, n):
    p = ssm_prior(ds, n)
    assert p.shape == (n, len(vocab.dataset_aus(ds)))
    assert set(np.unique(p)) <= {0.02, 1.0}
    assert (p[vocab.emotions(n).index("neutral")] == 0.02).all()
    happy = p[vocab.emotions(n).index("happiness")]
    aus = vocab.dataset_aus(ds)
    assert happy[aus.index(12)] == 1.0 and happy[aus.index(6)] == 1.0


def test_ckplus_prior_and_missing_aus():
    p = vocab.ckplus_prior(["happiness", "neutral", "surprise"], [12, 27, 45])
    assert p[0, 0] > 0.9 and (p[1] == 0).all() and p[2, 1] > 0.8
    assert np.isnan(p[0, 2])  # AU45 is not coded in CK+
    with pytest.raises(KeyError):
        vocab.ckplus_prior(["anxiety"], [1])


def test_au_dfer_tables():
    w, emos, aus = au_dfer_weights("DFEW")
    assert w.shape == (7, 18) and len(aus) == 18 and emos[0] == "happiness"
    v, _, _ = au_dfer_weights("DFEW_former_dfer_variant")
    assert np.allclose(sorted(map(tuple, w)), sorted(map(tuple, v)))  # same rows, permuted
    assert au_dfer_pos_weight("global").shape == (18,)
    minor = au_dfer_pos_weight("minor")
    assert (minor[emos.index("happiness")] == 1).all() and not (minor[emos.index("disgust")] == 1).all()


def test_base_rates_come_from_label_stats():
    r = vocab.au_base_rates([12, 9, 5])
    assert r[12] == vocab.reference("label_stats")["BP4D"]["base_rate"]["AU12"]
    assert r[9] == vocab.reference("label_stats")["DISFA"]["base_rate"]["AU9"]
    assert 5 not in r


def test_normalisation_constants_are_data():
    mean, std = vocab.normalisation("imagenet")
    raw = json.loads(resources.files("aufer").joinpath("data", "vocab.json").read_text())
    assert list(mean) == raw["normalisation"]["imagenet"]["mean"] and len(std) == 3


def test_package_data_paths_and_json():
    assert vocab.data_path("faces", "london") == vocab.data_path("faces/london") == vocab.data_path() / "faces" / "london"
    assert (vocab.data_path("faces", "london", "neutral") / "001.jpg").is_file()
    raw = json.loads(vocab.data_path("alignment.json").read_text(encoding="utf-8"))
    assert vocab.read_json("alignment.json") == raw
    assert vocab.read_json("reference", "protocols.json") is vocab.reference("protocols")  # one cached copy
    with pytest.raises(FileNotFoundError):
        vocab.read_json("nothing_here.json")
