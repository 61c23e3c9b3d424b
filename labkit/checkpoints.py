"""Checkpoints: a state_dict plus metadata, written atomically, read with ``weights_only=True``.

File layout (one ``torch.save`` dict): ``{"format": FORMAT, "meta": {...}, "state_dict": {...}}``
with meta keys ``arch``, ``dataset``, ``num_classes``, ``in_channels``, ``accuracy`` (test, 0..1),
``recipe`` (the TrainConfig as a dict, or any dict), ``torch_version``, ``checksum`` (:func:`checksum` of
the state_dict: loading refuses weights that do not match it, e.g. after a bit flip, which torch's zip
reader does not notice) and free-form extras.

The pretrained registry (``pretrained_path``): ``checkpoints/<arch>-<dataset>.pt`` under ``labkit.HOME``
(committed for the offline datasets), else ``checkpoints/cache/`` (``labkit.pretrain`` fills it and
checks a cached file's provenance before it reuses it).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from labkit import HOME, models
from labkit import device as policy
from labkit.atomic import atomic_open

FORMAT = "labkit-checkpoint-1"
CHECKPOINT_DIR = HOME / "checkpoints"
CACHE_DIR = CHECKPOINT_DIR / "cache"


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, not a labkit checkpoint, or does not match what was asked."""


def save_checkpoint(model: nn.Module, path: str | Path, *, arch: str, dataset: str,
                    accuracy: float | None = None, recipe: dict | None = None, **extra) -> Path:
    """Write ``model``'s state_dict and metadata to ``path`` atomically (temp file + rename), so a
    crash never leaves a half-written checkpoint under the final name."""
    if arch not in models.ARCHITECTURES:
        raise ValueError(f"arch={arch!r}: allowed are {', '.join(models.ARCHITECTURES)}")
    path = Path(path)
    num_classes, in_channels = models.constructor_args(model)
    meta = {"arch": arch, "dataset": dataset, "num_classes": num_classes, "in_channels": in_channels,
            "accuracy": accuracy, "recipe": dict(recipe or {}), "torch_version": str(torch.__version__),
            **extra}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta["checksum"] = checksum(state)
    blob = io.BytesIO()  # serialized first: a failed write is then a plain OSError (full disk), never torch's
    torch.save({"format": FORMAT, "meta": meta, "state_dict": state}, blob)
    with atomic_open(path, "wb") as f:
        f.write(blob.getbuffer())
    return path


def load_checkpoint(path: str | Path, *, arch: str | None = None, dataset: str | None = None,
                    ) -> tuple[dict, dict]:
    """Read ``(state_dict, meta)``; if ``arch`` / ``dataset`` are given they must match the file's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (saved by something other than labkit)")
    meta = blob["meta"]
    if "checksum" not in meta:
        raise CheckpointError(f"checkpoint {path} has no checksum (saved by an older labkit): make it again")
    if meta["checksum"] != checksum(blob["state_dict"]):
        raise CheckpointError(f"checkpoint {path} is damaged: its weights do not match the checksum saved "
                              "with them")
    for key, want in (("arch", arch), ("dataset", dataset)):
        if want is not None and meta[key] != want:
            raise CheckpointError(f"{path} holds {key}={meta[key]!r}, but {key}={want!r} was asked for")
    return blob["state_dict"], meta


def checksum(state: dict) -> str:
    """SHA-256 over a state_dict's names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_model(path: str | Path, *, arch: str | None = None, dataset: str | None = None, device=None,
               **model_kwargs) -> tuple[nn.Module, dict]:
    """Build the checkpoint's architecture (plus ``model_kwargs`` such as ``nbits``), load it and
    move it to ``device`` (default: the device policy's, ``labkit.device.get_device()``)."""
    state, meta = load_checkpoint(path, arch=arch, dataset=dataset)
    model = models.build(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                         **model_kwargs)
    model.load_state_dict(state)
    return model.to(device if device is not None else policy.get_device()), meta


def pretrained_path(arch: str, dataset: str, tag: str | None = None) -> Path:
    """Where the registry keeps ``arch`` trained on ``dataset``: the committed file, else the cache's
    ``<arch>-<dataset>.pt`` (the recipe on all the data), or ``<arch>-<dataset>-<tag>.pt`` for a model
    trained otherwise (e.g. tag ``quick``: on the quick profile's subset and epoch budget)."""
    committed = CHECKPOINT_DIR / f"{arch}-{dataset}.pt"
    return committed if committed.is_file() else CACHE_DIR / f"{arch}-{dataset}{f'-{tag}' if tag else ''}.pt"
