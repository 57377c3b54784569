"""Several trained models of one architecture run as one module, so that an attack on it attacks
all of them at once: the measurement behind bench/bench_stacked_attacks.py (not used by the audit;
BENCHMARKS.md says why).

`StackedMembers(models)` holds the members' weights stacked along a leading dimension
(`torch.func.stack_module_state`) and takes K times the examples: rows [k*B, (k+1)*B) of its
input go through member k alone (one `vmap`ped `functional_call`). Given each member's copy of a
batch, one after the other, an attack on it is K attacks: the evasion attacks treat examples
independently (a per-example step, projection, step size and stopping rule), and an example's
input gradient comes from its own member's logits only. What the members share is the random
stream of random starts and restarts, so a stacked member's attack is a lone attack with other
random draws: the same statistical outcome, not the same bits (FGSM, which draws nothing, gives
the lone results up to the rounding of batched kernels).

This holds only for an attack that passes its whole batch to the model at every step (FGSM, PGD,
PGD-L2). APGD, APGD-T and Square pass the rows still to be broken, a subset whose members the
module cannot tell apart (every member's copy of an input is the same input); it then refuses
the call rather than route a row through another member's weights.

The weights are frozen (attacks take input gradients only), and the members run in eval mode,
so running statistics are read, never written: a BatchNorm model stacks here, although it
cannot train stacked.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class NotStackable(ValueError):
    """These models cannot run as one stacked module; run them one by one."""


def why_not_stackable(models: list[nn.Module]) -> str | None:
    """Why these trained models cannot run as one stacked module, or None when they can."""
    if len(models) < 2:
        return "a single model"
    first = models[0]
    shapes = {name: (tuple(p.shape), p.dtype, p.device) for name, p in first.named_parameters()}
    for other in models[1:]:
        if type(other) is not type(first):
            return "the models are of different classes"
        if {name: (tuple(p.shape), p.dtype, p.device) for name, p in other.named_parameters()} != shapes:
            return "the models differ in their parameters"
        if {name: tuple(b.shape) for name, b in other.named_buffers()} != {
                name: tuple(b.shape) for name, b in first.named_buffers()}:
            return "the models differ in their buffers"
    return None


class StackedMembers(nn.Module):
    """K models of one architecture as one module over K times the examples (module docstring)."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        why = why_not_stackable(models)
        if why:
            raise NotStackable(f"these models cannot run stacked: {why}")
        self.members = len(models)
        params, buffers = stack_module_state(models)
        self._param_names, self._buffer_names = list(params), list(buffers)
        # frozen: an attack differentiates with respect to its inputs only
        self.weights = nn.ParameterList(nn.Parameter(p.detach(), requires_grad=False) for p in params.values())
        for i, b in enumerate(buffers.values()):
            self.register_buffer(f"stacked_buffer_{i}", b.detach())
        # the architecture without storage; kept in a list so that it is not a submodule (whose
        # meta-device parameters would then be this module's)
        self._template = [copy.deepcopy(models[0]).to("meta").eval()]
        self._batched = vmap(self._member_forward)

    def _member_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template[0], (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (K * B, ...) -> (K * B, classes)
        if len(x) % self.members:
            raise ValueError(f"a stacked module of {self.members} members needs a multiple of "
                             f"{self.members} rows (each member's copy of a batch), got {len(x)}")
        params = dict(zip(self._param_names, self.weights))
        buffers = {name: getattr(self, f"stacked_buffer_{i}") for i, name in enumerate(self._buffer_names)}
        out = self._batched(params, buffers, x.view(self.members, -1, *x.shape[1:]))
        return out.flatten(0, 1)


def stack_for_attack(models: list[nn.Module], example: torch.Tensor) -> StackedMembers:
    """`StackedMembers(models)`, after one trial pass on each member's copy of `example` (a batch
    of inputs) that gives the members' own outputs. Raises NotStackable where the models cannot
    run stacked, where vmap would run one of their operations member by member (no batching rule:
    stacked is then no faster than alone), or where the trial pass fails or disagrees."""
    stacked = StackedMembers(models)
    device = next(models[0].parameters()).device
    example = example.to(device)
    try:
        with torch.no_grad(), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            together = stacked(example.repeat(len(models), *[1] * (example.ndim - 1)))
    except RuntimeError as exc:  # something vmap cannot batch (an in-place buffer write, say)
        raise NotStackable(f"the models cannot run batched over members ({exc})") from exc
    slow = [str(w.message) for w in said if "batching rule" in str(w.message)]
    if slow:
        raise NotStackable(f"vmap has no batching rule for an operation of these models: {slow[0][:160]}")
    with torch.no_grad():
        alone = torch.cat([m(example) for m in models])
    if together.shape != alone.shape or not torch.allclose(together.float(), alone.float(), rtol=1e-3, atol=1e-4):
        raise NotStackable("the stacked pass does not give the members' own outputs")
    return stacked
