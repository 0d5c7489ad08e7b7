"""Training state for exact resume, written atomically.

A state is a folder ``<run>/state/step-<global step>/`` holding

* ``model.safetensors`` and (with EMA) ``ema.safetensors`` — weights as safetensors;
* ``optim.pt`` — optimiser, scheduler and AMP-scaler state dicts and the torch RNG states, only tensors and
  plain containers, loadable with ``torch.load(weights_only=True)``;
* ``meta.json`` — epoch, step within the epoch, global step, best score, history, and the SHA-256 of every
  file above.

The folder is written under a temporary name and renamed; then ``state/LATEST`` (a one-line pointer, itself
written to a temporary file and renamed) names it. Older states are deleted only after the new pointer is in
place, and the previous one is always kept, so a crash at any point leaves a good state. A state whose files
do not match their checksums (truncated, corrupted) is refused with :class:`StateError` and the previous good
state is used instead (:func:`load_latest`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from aufer.errors import UserMistake

__all__ = ["StateError", "save_state", "load_state", "load_latest", "latest_dir", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)


class StateError(UserMistake, ValueError):
    """A training state that cannot be used (missing, truncated or corrupted files); the message names it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state() -> dict:
    """The torch RNG states (CPU and every CUDA device) as tensors."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_state(root: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
               scaler=None, ema: torch.nn.Module | None = None, meta: dict, extra: dict | None = None,
               keep: int = 2) -> Path:
    """Write one training state under ``root`` (``<run>/state``) and point ``LATEST`` at it.

    Args:
        model: the (unwrapped) model.
        meta: JSON-serialisable facts (epoch, step, global_step, best, history ...); must hold ``global_step``.
        extra: more tensors / plain containers for ``optim.pt`` (e.g. a loss's running state).
        keep: states kept, newest first (at least 2, so that a corrupted newest state has a predecessor).

    Returns:
        The state folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{int(meta['global_step']):09d}"
    final, tmp = root / name, root / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_tensors(model), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(_tensors(ema), str(tmp / "ema.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng_state(), **(extra or {})}, tmp / "optim.pt")
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / "meta.json").write_text(json.dumps({**meta, "files": files}, indent=1))
    for p in tmp.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / "LATEST"
    ptmp = root / ".LATEST.partial"
    ptmp.write_text(name + "\n")
    os.replace(ptmp, pointer)
    _fsync_dir(root)
    states = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in states[: max(0, len(states) - max(2, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(folder: str | Path) -> dict:
    """Read and verify one state folder.

    Returns:
        ``{"meta", "model", "ema" (or None), "optimizer", "scheduler", "scaler", "rng"}`` with tensors on CPU.

    Raises:
        StateError: a file is missing or does not match its recorded checksum, or cannot be read.
    """
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise StateError(f"{meta_path}: unreadable training state ({e})") from None
    for fname, digest in meta.get("files", {}).items():
        p = folder / fname
        if not p.is_file():
            raise StateError(f"{p}: missing from the training state")
        if _sha256(p) != digest:
            raise StateError(f"{p}: truncated or corrupted (checksum mismatch)")
    try:
        model = load_file(str(folder / "model.safetensors"))
        ema = load_file(str(folder / "ema.safetensors")) if (folder / "ema.safetensors").is_file() else None
        rest = torch.load(folder / "optim.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any decoding failure of a verified file is a corrupted state)
        raise StateError(f"{folder}: cannot read the training state ({type(e).__name__}: {e})") from None
    return {"meta": meta, "model": model, "ema": ema, **rest}


def latest_dir(root: str | Path) -> Path | None:
    """The state folder ``LATEST`` points to (or the newest one when the pointer is missing); None if none."""
    root = Path(root)
    pointer = root / "LATEST"
    if pointer.is_file():
        p = root / pointer.read_text().strip()
        if p.is_dir():
            return p
    states = sorted(p for p in root.glob("step-*") if p.is_dir())
    return states[-1] if states else None


def load_latest(root: str | Path) -> dict | None:
    """The newest good training state under ``root``, or None when there is none yet.

    A newest state that fails verification is reported (a warning naming the file and the reason) and the
    next older one is tried; its folder is left on disk for inspection.

    Raises:
        StateError: states exist but none of them is readable.
    """
    root = Path(root)
    first = latest_dir(root)
    if first is None:
        return None
    candidates = [first] + sorted((p for p in root.glob("step-*") if p.is_dir() and p != first), reverse=True)
    errors = []
    for c in candidates:
        try:
            state = load_state(c)
        except StateError as e:
            errors.append(str(e))
            log.warning("%s; using the previous good training state", e)
            continue
        state["meta"]["_folder"] = str(c)
        return state
    raise StateError("no usable training state under " + str(root) + ": " + "; ".join(errors))
