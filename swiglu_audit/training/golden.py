"""Golden outputs: logits on a fixed probe set, stored per platform and dtype, compared later.

A missing golden file is created and reported as such (never a silent pass); an explicit flag
(--swiglu-audit-update-golden) regenerates existing ones. Files are safetensors, written
atomically; each carries the hash of the probe inputs, so a changed probe set is not mistaken for
changed numerics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..util.io import atomic_write, safetensors_metadata


def golden_path(golden_dir: Path, platform: str, model: str) -> Path:
    """The golden file of one model on one platform, inside `golden_dir`. Model names are checked
    at start-up; a name that would still lead out of the folder ('../x') is refused here, so that
    writing a golden file never replaces a file elsewhere."""
    folder = Path(golden_dir)
    path = folder / platform / f"{model}.safetensors"
    if not path.resolve().is_relative_to(folder.resolve()) or path.parent.parent != folder:
        raise ValueError(f"model name {model!r} (platform {platform!r}) would put its golden file outside "
                         f"{folder}; give the model a name of letters, digits, '-', '_' and '.'")
    return path


def _write(path: Path, logits: torch.Tensor, meta: dict) -> None:
    atomic_write(path, lambda tmp: save_file({"logits": logits.detach().cpu().contiguous()}, tmp,
                                             metadata={k: json.dumps(v) for k, v in meta.items()}),
                 suffix=".safetensors")


def _read_meta(path: Path) -> dict:
    return {k: json.loads(v) for k, v in safetensors_metadata(path).items()}


def compare_or_write(path: Path, logits: torch.Tensor, probe_digest: str, update: bool) -> dict:
    """Compare `logits` with the golden file at `path`, or create/regenerate it.

    Returns {"action": "compared" | "created" | "regenerated", "max_deviation", "where", "note"}.
    """
    meta = {"probe_sha256": probe_digest, "shape": list(logits.shape)}
    if update or not path.exists():
        action = "regenerated" if path.exists() else "created"
        _write(path, logits, meta)
        return {"action": action, "max_deviation": None, "where": None,
                "note": f"golden file {action} at {path}; nothing was compared in this run"}
    try:
        golden = load_file(str(path))["logits"]
        stored = _read_meta(path)
    except (SafetensorError, KeyError, OSError, ValueError) as exc:
        raise ValueError(f"golden file {path} is unreadable ({exc}); regenerate it with "
                         "--swiglu-audit-update-golden") from exc
    if stored.get("probe_sha256") != probe_digest or tuple(golden.shape) != tuple(logits.shape):
        raise ValueError(f"golden file {path} was made on a different probe set (shape "
                         f"{tuple(golden.shape)} vs {tuple(logits.shape)}); regenerate it with "
                         "--swiglu-audit-update-golden if the data change is intended")
    diff = (logits.double() - golden.double()).abs()
    idx = int(diff.argmax())
    row, col = divmod(idx, logits.shape[1])
    return {"action": "compared", "max_deviation": float(diff.max()),
            "where": f"probe example {row}, logit {col}: {float(logits[row, col]):.6g} vs golden "
                     f"{float(golden[row, col]):.6g}", "note": f"compared with {path}"}
