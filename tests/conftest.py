import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def detector():
    from aufer.faces.mediapipe_backend import MediaPipeFaceDetector

    det = MediaPipeFaceDetector()
    yield det
    det.close()


@pytest.fixture(scope="session")
def faces_df():
    from aufer.bundled import bundled_faces

    return bundled_faces()


@pytest.fixture(scope="session")
def neutral_image(faces_df):
    from aufer.media import read_image

    return read_image(faces_df.query("set == 'london' and expression == 'neutral'").path.iloc[0])


@pytest.fixture(scope="session")
def tiny_model():
    """An untrained demo-architecture model (random weights, fixed seed)."""
    import torch

    from aufer.synth import SYNTH_AUS
    from aufer.models import create_model

    torch.manual_seed(0)
    return create_model("aufer_tiny", aus=SYNTH_AUS, input_size=64, width=8, dim=32, geometry_dim=16).eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
