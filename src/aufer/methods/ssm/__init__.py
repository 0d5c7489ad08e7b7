"""SSM — Structured Semantic Mapping (Li, Zhang, Chen, Hu, Li, Hong, Shan, Wang; IEEE TAFFC 2026, arXiv 2604.10541):
bidirectional AU ↔ expression learning across heterogeneous datasets with textual semantic prototypes and a dynamic
FACS-prior mapping. Read against the official code (github.com/MSA-LMC/SSM, Apache-2.0, commit 978d79a).

The package, as the paper reads:

* :mod:`.model` — the network (``ssm.*`` models): CLIP vision tower with MoE FFNs, temporal nets, heads;
* :mod:`.modules` — MoE FFN, dynamic prior mapping (DPM), temporal transformers, frame-pair smoother;
* :mod:`.text` — the textual semantic prototypes (TSP): CLIP / MiniLM text towers and prompt learners;
* :mod:`.vocab` — SSM's FACS prior and class descriptions;
* :mod:`.loss` — the loss L1..L4 with its ramp (``train.loss: ssm``) and the mixup step (``train.step: ssm``);
* :mod:`.official` — official checkpoints ⇄ aufer (``aufer import ssm``);
* :mod:`.released` — the released, test-tuned AU evaluator (``aufer evaluate RUN --released ssm``).

Docs: ``docs/ssm.md``; recipes: ``configs/ssm/``.
"""

from aufer.methods.ssm import loss, model, official, released  # noqa: F401  (each registers its entries)
from aufer.methods.ssm.loss import batch_mixup, ssm_loss, ssm_ramp, ssm_step
from aufer.methods.ssm.model import SSM
from aufer.methods.ssm.official import PAIRS, from_official_state_dict, to_official_state_dict
from aufer.methods.ssm.released import evaluate_released
from aufer.methods.ssm.vocab import ssm_descriptions, ssm_prior

__all__ = ["SSM", "ssm_loss", "ssm_step", "ssm_ramp", "batch_mixup", "from_official_state_dict",
           "to_official_state_dict", "PAIRS", "evaluate_released", "ssm_prior", "ssm_descriptions"]
