"""SSM's vocabulary tables: its exact FACS prior and the class descriptions of its text prompts, read from
``aufer/data/reference/facs_priors.json`` (copied from the official code, with its provenance note).
"""

from __future__ import annotations

import numpy as np

from aufer import vocab

__all__ = ["ssm_prior", "ssm_descriptions"]


def ssm_prior(au_dataset: str, n_emotions: int = 7) -> np.ndarray:
    """SSM's exact FACS prior, shape ``(E, A)``: 1.0 where FACS links the AU to the emotion, 0.02 elsewhere;
    rows in :func:`aufer.vocab.emotions` order, columns in :func:`aufer.vocab.dataset_aus` order.

    Source: github.com/MSA-LMC/SSM ``ssm/models/bp4d.py``, ``ssm/models/disfa.py`` (facs_priors.json).

    Raises:
        KeyError / ValueError: for an AU dataset other than BP4D/DISFA or ``n_emotions`` not 7 or 11.
    """
    vocab.emotions(n_emotions)
    pri = vocab.reference("facs_priors")["ssm"]
    return np.asarray(pri[vocab.dataset_key(au_dataset, pri)][str(n_emotions)], dtype=np.float64)


def ssm_descriptions(key: str) -> tuple[str, ...]:
    """SSM's class descriptions fed to its text prompt learner: ``BP4D_7``, ``DISFA_7`` or ``MAFW_11``."""
    return tuple(vocab.reference("facs_priors")["ssm_emotion_descriptions"][key])
