"""Named tables that the methods fill: the leaf of aufer's plug-in layout (this module imports nothing of aufer).

A :class:`Registry` maps a name (``"ssm"``) to an object (a loss function, a step function, a checkpoint importer,
an evaluator). The layers *below* the methods create the registries (:mod:`aufer.training.registry`,
:mod:`aufer.models._registry`); each method registers its own entries with the registry's decorator when its
package is imported; nothing below the methods imports a method.

So that a lookup sees every method whoever asks first, a registry imports the **plug board** (:data:`PLUG_BOARD`,
the package :mod:`aufer.methods`, whose ``__init__`` imports each method: one line each) before its first read,
as mmengine's ``Registry(locations=[...])`` imports its locations before its first build. That is the only place
where a layer below the methods names them, and it names the plug board, never a method.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable, TypeVar

__all__ = ["PLUG_BOARD", "Registry", "load_plug_board"]

#: the package whose import registers every method (one import line per method)
PLUG_BOARD = "aufer.methods"

T = TypeVar("T")
_state = {"loaded": False}


def load_plug_board() -> None:
    """Import :data:`PLUG_BOARD` once (later calls, and calls made while it is being imported, do nothing)."""
    if _state["loaded"]:
        return
    _state["loaded"] = True
    try:
        importlib.import_module(PLUG_BOARD)
    except BaseException:
        _state["loaded"] = False
        raise


class Registry(MutableMapping):
    """A name → object table with a registering decorator; reads see every method (:func:`load_plug_board`).

    Args:
        kind: what the entries are (``"loss"``, ``"step"``...), used in messages.
        what: where the names come from, for the unknown-name message (``"train.loss"``).

    Example::

        LOSSES = Registry("loss", "train.loss")

        @LOSSES.register("mdhr")
        def mdhr_loss(out_au, out_expr, au_batch, expr_batch, *, ctx, **args): ...

    ``registry[name]`` raises :class:`KeyError` whose message lists the registered names. Assigning
    (``registry[name] = obj``) replaces an entry (tests do this); :meth:`register` refuses a name that is taken.
    """

    def __init__(self, kind: str, what: str | None = None):
        self.kind, self.what = kind, what or kind
        self._items: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name``; returns it unchanged.

        Raises:
            ValueError: ``name`` is already registered.
        """
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
            self._items[name] = obj
            return obj
        return deco

    def names(self) -> list[str]:
        """The registered names, sorted."""
        load_plug_board()
        return sorted(self._items)

    def __getitem__(self, name: str) -> Any:
        load_plug_board()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"{self.what}: unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}") \
                from None

    def __setitem__(self, name: str, obj: Any) -> None:
        self._items[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __contains__(self, name: object) -> bool:
        load_plug_board()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        load_plug_board()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        load_plug_board()
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(sorted(self._items))})"
