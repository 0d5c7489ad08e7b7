"""The plug board: the one place that lists aufer's methods. Importing it imports each method's package, which
registers the method's models (:mod:`aufer.models._registry`), losses, steps and evaluators
(:mod:`aufer.training.registry`) and official-checkpoint importers (``aufer import NAME``).

A method is one folder, ``aufer/methods/<name>/``, and one line here; :mod:`aufer.methods._template` shows the shape
and ``docs/engine.md`` ("Adding a method") the checklist. Files under ``methods/`` import the model contract, the
registries and the data layers, never the engine, the CLI, or another method (a method that combines with another
looks it up by name in a registry, as SSM's loss finds AU-DFER's).
"""

from aufer.methods import au_dfer, graphau, mal, mdhr, mtl, ssm  # noqa: F401  (one per method: each registers itself)

__all__ = ["au_dfer", "graphau", "mal", "mdhr", "mtl", "ssm"]
