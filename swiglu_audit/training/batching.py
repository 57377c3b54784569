"""Batch sizes that follow the device's free memory and the model's cost per example.

The evaluation, feature and attack passes work through their inputs in batches. A constant batch
fits the built-in zoo everywhere but not a user's large model on a small device; a batch sized from
memory fits both. The cost per example is counted, not guessed: the bytes of the activations a
forward pass saves for the backward pass (each storage once), measured on two examples. That
bounds what a no-grad forward pass holds at its peak, and an input-gradient pass holds about twice
that (the activations and their gradients).

The batches never exceed the constants they replace (1024 for evaluation and features, 512 for
attacks): those already hold the whole attack set, and larger batches would change nothing but the
floating-point rounding of results that the cache and the golden files pin.
"""

from __future__ import annotations

import contextlib
import os
import re
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .nn import eval_mode

MEMORY_ENV = "SWIGLU_AUDIT_DEVICE_MEMORY"  # caps the memory the batches plan for, e.g. "2GiB"
EVAL_CEILING, ATTACK_CEILING = 1024, 512
# The share of the free memory one pass may plan for: xdist workers, the allocator's caching and
# the attack's own buffers share the rest.
MEMORY_SHARE = {"cuda": 0.5, "cpu": 0.25, "mps": 0.25}
CPU_MEMORY_FALLBACK = 2 * 1024 ** 3  # where the free memory cannot be read

_per_example: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batch_size(model: nn.Module, example: torch.Tensor, device: torch.device, gradients: bool = False,
               members: int = 1, ceiling: int | None = None) -> int:
    """The batch for passes of `model` over inputs shaped like `example` (one input, or a batch of
    them) on `device`: as many examples as fit the device's share of free memory, at least 1 and at
    most the former constant. `gradients`: the pass also computes input gradients (attacks).
    `members`: each example runs through that many stacked copies of the model (a stacked attack's
    batch is each member's copy of it), so memory holds that many times the activations.
    `ceiling`: another most than the former constant's (the trigger scan's groups of classes)."""
    ceiling = ceiling or (ATTACK_CEILING if gradients else EVAL_CEILING)
    per_example = example_bytes(model, example, device) * (2 if gradients else 1) * members
    if per_example <= 0:
        return ceiling
    budget = free_memory_bytes(device) * MEMORY_SHARE.get(device.type, 0.25)
    return int(max(1, min(ceiling, budget // per_example)))


def example_bytes(model: nn.Module, example: torch.Tensor, device: torch.device) -> int:
    """Bytes of activations a forward pass of `model` saves per example (memoised per model and
    input shape; 0 where the model cannot be run this way, so that the caller keeps its ceiling)."""
    shape = tuple(example.shape[1:]) if example.ndim > 1 else tuple(example.shape)
    known = _per_example.setdefault(model, {})
    key = (shape, str(device))
    if key not in known:
        known[key] = _count_saved_bytes(model, shape, device)
    return known[key]


@contextlib.contextmanager
def counting_saved_storages(model: nn.Module):
    """Within: every storage autograd saves for the backward pass, each once, parameters
    excluded; yields the dict (storage address -> bytes) it fills."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield seen


def _count_saved_bytes(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    # a fresh tensor: a slice of the dataset would count the whole dataset's storage
    x = torch.rand((2, *shape), device=device, requires_grad=True)
    try:  # callers run under no_grad, where nothing is saved: the count needs autograd on
        with torch.enable_grad(), eval_mode(model), counting_saved_storages(model) as seen:
            out = model(x)
            F.cross_entropy(out.float(), torch.zeros(2, dtype=torch.long, device=device))
    except Exception:  # noqa: BLE001  # the model's own contract check reports a failing forward pass
        return 0
    return (sum(seen.values()) + x.nbytes) // 2


def free_memory_bytes(device: torch.device) -> int:
    """Free memory of the device, capped by SWIGLU_AUDIT_DEVICE_MEMORY where it is set."""
    cap = memory_cap()
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    elif device.type == "mps" and hasattr(torch, "mps"):
        free = torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
    else:
        free = _cpu_available()
    return min(free, cap) if cap else free


def total_memory_bytes(device: torch.device) -> int:
    """The device's whole memory (not what is free now), capped by SWIGLU_AUDIT_DEVICE_MEMORY: for
    sizes that must not change from run to run with what else the machine holds."""
    cap = memory_cap()
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "mps" and hasattr(torch, "mps"):
        total = torch.mps.recommended_max_memory()
    else:
        total = _meminfo("MemTotal:")
    return min(total, cap) if cap else total


def _cpu_available() -> int:
    return _meminfo("MemAvailable:")


def _meminfo(field: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return CPU_MEMORY_FALLBACK


_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3}


def memory_cap() -> int | None:
    """SWIGLU_AUDIT_DEVICE_MEMORY in bytes ("512MiB", "2GiB", "1e9"), or None where it is unset."""
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return None
    match = re.fullmatch(r"([0-9.eE+]+)\s*([a-zA-Z]*)", raw)
    unit = match.group(2).lower() if match else ""
    try:
        value = float(match.group(1)) * _UNITS[unit] if match else -1.0
    except (ValueError, KeyError):
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{MEMORY_ENV}={raw!r}: give the memory the audit's batches may plan for, "
                          "a positive size such as \"512MiB\" or \"2GiB\"")
    return int(value)
