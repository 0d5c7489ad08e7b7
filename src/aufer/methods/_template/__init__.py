"""A template method: the shape every method package of aufer has. Copy this folder to ``methods/<name>/``, rename
the registered names, add one line to the plug board (:mod:`aufer.methods`), and the engine, ``aufer train``,
``aufer predict``, ``aufer import`` and ``aufer.load_model`` find it. The checklist is in ``docs/engine.md``
("Adding a method").

This one is a toy AU detector (SYNTHETIC example: no paper, nothing to reproduce) with its own model, loss, step and
official-checkpoint importer, one module each:

* :mod:`.model` — the network, registered with ``@register_model`` (name ``template_au``, variant
  ``template_au.tiny``), following the model contract (:mod:`aufer.models.contract`);
* :mod:`.loss` — its loss (``train.loss: template_au``) and step (``train.step: template_au``), registered with
  ``@register_loss`` / ``@register_step`` (:mod:`aufer.training.registry`);
* :mod:`.official` — the converter of the (imagined) official checkpoint layout, registered as ``aufer import
  template_au``.

It is deliberately *not* on the plug board, so that it never appears in ``aufer models``: ``tests/test_template.py``
imports it, which registers it, and trains it one step through the engine. Files of a method import the model
contract, the registries and the data layers, never the engine, the CLI or another method.
"""

from aufer.methods._template import loss, model, official  # noqa: F401  (each registers its entries)
from aufer.methods._template.loss import template_au_loss, template_au_step
from aufer.methods._template.model import TemplateAU
from aufer.methods._template.official import from_official_state_dict

__all__ = ["TemplateAU", "template_au_loss", "template_au_step", "from_official_state_dict"]
