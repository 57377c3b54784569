"""Several trained models of one architecture run as one module, so that one attack attacks all of
them at once (`methods/stacked_attacks.py`).

`StackedMembers(models)` holds the members' weights stacked along a leading dimension
(`torch.func.stack_module_state`) and runs every row of its input through the weights of the
member that row belongs to (one `vmap`ped `functional_call`). Which member a row belongs to is its
*route*: by default the input is each member's copy of a batch, one after the other (rows
[k*B, (k+1)*B) are member k's); an attack that passes a subset of its rows (APGD and Square
attack only the rows still to be broken) sets the route of that subset first (`routed`). Rows
are grouped by member, padded to the largest group with zeros (constants: no gradient flows from
a padding row to any input), run, and put back in their own order, so an example's output, and
its input gradient, come from its own member's weights alone.

The weights are frozen (attacks take input gradients only), and the members run in eval mode,
so running statistics are read, never written: a BatchNorm model stacks here, although it
cannot train stacked.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..training.nn import eval_mode
from ..training.stacked import run_member_by_member


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
    """K models of one architecture as one module; each row runs through its own member's weights
    (module docstring). Counts, per member, the rows it ran forward and backward while `counting`."""

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
        self._route: torch.Tensor | None = None
        self.counting = False
        self.forward_rows = [0] * self.members
        self.backward_rows = [0] * self.members

    def _member_forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template[0], (params, buffers), (x,))

    @contextlib.contextmanager
    def routed(self, members: torch.Tensor):
        """Within: every input has len(members) rows, row i belonging to member members[i]."""
        previous, self._route = self._route, members.to(self.weights[0].device, torch.long)
        try:
            yield self
        finally:
            self._route = previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, ...) -> (N, classes)
        params = dict(zip(self._param_names, self.weights))
        buffers = {name: getattr(self, f"stacked_buffer_{i}") for i, name in enumerate(self._buffer_names)}
        if self._route is None:  # each member's copy of a batch in turn
            if len(x) % self.members:
                raise ValueError(f"a stacked module of {self.members} members needs a multiple of "
                                 f"{self.members} rows (each member's copy of a batch) or a route, got {len(x)}")
            member_rows = None
            out = self._batched(params, buffers, x.reshape(self.members, -1, *x.shape[1:])).flatten(0, 1)
        else:
            if len(self._route) != len(x):
                raise ValueError(f"the route names {len(self._route)} rows, the input has {len(x)}")
            member_rows = torch.bincount(self._route, minlength=self.members)
            out = self._regrouped(params, buffers, x, self._route, member_rows)
        if self.counting:  # read back to the host only then: Square calls this once a query
            counts = [len(x) // self.members] * self.members if member_rows is None else member_rows.tolist()
            self._count(counts, out)
        return out

    def _regrouped(self, params, buffers, x, route, counts) -> torch.Tensor:
        """Rows grouped by member and zero-padded to the largest group, run, and put back in order."""
        order = torch.argsort(route, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(route)
        position[order] = torch.arange(len(route), device=route.device) - starts[route[order]]
        padded = x.new_zeros(self.members, max(1, int(counts.max())), *x.shape[1:])
        padded = padded.index_put((route, position), x)  # out of place: gradients reach x's rows
        return self._batched(params, buffers, padded)[route, position]

    def _count(self, counts: list[int], out: torch.Tensor) -> None:
        for k, n in enumerate(counts):
            self.forward_rows[k] += n
        if out.requires_grad:
            out.register_hook(lambda grad, counts=counts: self._count_backward(counts))

    def _count_backward(self, counts: list[int]) -> None:
        for k, n in enumerate(counts):
            self.backward_rows[k] += n


def stack_for_attack(models: list[nn.Module], example: torch.Tensor) -> StackedMembers:
    """`StackedMembers(models)`, after one trial pass on each member's copy of `example` (a batch
    of inputs) that gives the members' own outputs and input gradients. Raises NotStackable where
    the models cannot run stacked, where vmap would run one of their operations member by member
    (no batching rule: stacked is then no faster than alone), or where the trial fails or
    disagrees with the members run alone."""
    device = next(models[0].parameters()).device
    example = example.to(device)
    try:
        stacked = StackedMembers(models)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            xs = example.repeat(len(models), *[1] * (example.ndim - 1)).requires_grad_(True)
            together = stacked(xs)
            (together_grad,) = torch.autograd.grad(together.float().sum(), xs)
    except NotStackable:
        raise
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:  # what vmap or the model refuses
        raise NotStackable(f"the models cannot run batched over members ({exc})") from exc
    slow = run_member_by_member([str(w.message) for w in said])
    if slow:
        raise NotStackable(slow)
    alone, alone_grad = [], []
    for model in models:
        with eval_mode(model):
            x = example.clone().requires_grad_(True)
            out = model(x)
            alone.append(out.detach())
            alone_grad.append(torch.autograd.grad(out.float().sum(), x)[0])
    alone_out, alone_grads = torch.cat(alone), torch.cat(alone_grad)
    if together.shape != alone_out.shape or not torch.allclose(together.detach().float(), alone_out.float(), rtol=1e-3, atol=1e-4):
        raise NotStackable("the stacked pass does not give the members' own outputs")
    if not torch.allclose(together_grad.float(), alone_grads.float(), rtol=1e-3, atol=1e-4):
        raise NotStackable("the stacked pass does not give the members' own input gradients")
    return stacked
