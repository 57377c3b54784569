"""Numerical-regression and efficiency measurements per model, memoised per process."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..methods import numerical as numerical_methods
from ..methods.numerical import half_parity, max_difference, state_difference
from ..training import activations, evaluation_rows
from ..training import nn as nn_module
from ..training import train as train_module
from ..training.cache import code_digest
from ..training.device import deterministic_algorithms
from ..training.planned import Trainings, Work
from ..training.train import Recipe, predict_logits, train_model
from ..util.imports import source_digest

if TYPE_CHECKING:
    from ..session import AuditSession


def half_precision(audit: AuditSession, name: str, dtype: str) -> dict:
    """Each seed's model at `dtype` against float32 on the measured test inputs (`evaluation_subset`);
    cached on disk."""
    def measure():
        runs = [half_parity(m.module, x, dtype) for m in models]
        return {"flips": np.stack([r["flips"] for r in runs])}, {
            "max_logit_deviation": max(r["max_logit_deviation"] for r in runs),
            "finite": all(r["finite"] for r in runs),
            **_headroom(runs),
        }

    def compute():
        arrays, record = audit.cached_arrays("half-precision", models, {"dtype": dtype, "n": len(x)}, _CODE_DIGEST,
                                             measure)
        return {**record, "flips": arrays["flips"]}

    x, _ = audit.data.evaluation_subset("test", audit.config.numerical.n_examples)
    models = audit.zoo.models(name)
    return audit.memo(("half", name, dtype), compute)


def _headroom(runs: list[dict]) -> dict:
    """The worst seed's FFN absmax and headroom; both None where any seed's was not measured
    (no FFN found)."""
    if any(r["ffn_absmax"] is None for r in runs):
        return {"ffn_absmax": None, "headroom": None}
    return {"ffn_absmax": max(r["ffn_absmax"] for r in runs), "headroom": min(r["headroom"] for r in runs)}


def op_implementation(audit: AuditSession, impl_name: str):
    """The SwiGLU implementations under test: the eager reference op, its torch.compile'd form,
    and any the user registered under [tool.swiglu_audit.numerical.implementations]."""
    from ..errors import ConfigError
    from ..training.nn import swiglu
    from ..util.imports import load_callable

    if impl_name == "eager":
        return swiglu
    if impl_name == "compiled":
        return audit.memo(("compiled-op",), lambda: torch.compile(swiglu, dynamic=True))
    path = audit.config.numerical.implementations[impl_name]
    return load_callable(path, f"[tool.swiglu_audit.numerical.implementations] {impl_name}", ConfigError)


def op_outcome(audit: AuditSession, impl_name: str, kind: str, settings: dict, check) -> dict:
    """The outcome of `check()` (the op's property test or gradcheck) on one implementation. The
    built-in ones, the audit's own op eager or compiled, are kept in the cache for the day on this
    host: the op's code, the checks' code, torch's and hypothesis's versions are in the key, and a
    warm audit re-judges rather than reruns them (about a second of it). A user's registered
    implementation is checked on every run: what it calls is in no key."""
    if impl_name not in ("eager", "compiled"):
        return check()
    from importlib import metadata

    key = {"impl": impl_name, "check": kind, **settings, "hypothesis": metadata.version("hypothesis"),
           **audit.machine_today()}
    return audit.cached_record(f"op-{kind}", [], key, _OP_DIGEST, check)


def implementation_names(config) -> list[str]:
    return ["eager"] + (["compiled"] if config.numerical.compile else []) + sorted(config.numerical.implementations)


def planned_work(audit: AuditSession, name: str) -> Work:
    """The suite's declared work on one model: the determinism check's two trainings (never
    cached as checkpoints; the check's outcome is cached for the day). A pretrained model is not trained."""
    if audit.zoo.spec(name).weights:
        return Work()
    return Work(trainings={"determinism": Trainings([], audit.config.numerical.determinism_epochs, (0, 1))})


def determinism(audit: AuditSession, name: str) -> dict:
    """Train the first seed twice, briefly, from scratch; compare weights and outputs."""
    def compute():
        spec, cfg = audit.zoo.spec(name), audit.config
        probe = audit.data.x_val[: cfg.numerical.golden_probe]
        if spec.weights:  # pretrained: only the forward pass can be checked
            m = audit.zoo.models(name)[0].module
            a, b = predict_logits(m, probe, audit.device), predict_logits(m, probe, audit.device)
            # no weights were trained twice: no weight difference was measured
            return {"trained": False, "weight_diff": None, "weight_where": None,
                    "output_diff": max_difference(a, b)}
        recipe = Recipe(**{**cfg.training.to_dict(), "epochs": cfg.numerical.determinism_epochs})
        seed = cfg.seeds[0]
        torch.manual_seed(seed)
        key = audit.zoo.training_key(spec, seed, "determinism", audit.zoo.instantiate(spec), recipe)
        # A property of this machine and code, measured once a day: a warm audit re-judges it. A
        # user's model is keyed by its module's source too: a mended forward is measured again.
        settings = {"training": key, "probe": cfg.numerical.golden_probe, "source": source_digest(spec.factory),
                    **audit.machine_today()}
        return audit.cached_record("determinism", [], settings, _CODE_DIGEST, lambda: twice(spec, recipe, seed, probe))

    def twice(spec, recipe, seed, probe) -> dict:
        states, outputs = [], []
        for _ in range(2):
            torch.manual_seed(seed)
            with deterministic_algorithms():  # on CUDA, atomics-based kernels would differ run to run
                model = audit.zoo.instantiate(spec).to(audit.device)
                train_model(model, audit.data.x_train, audit.data.y_train, recipe, seed, audit.device)
                states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
                outputs.append(predict_logits(model, probe, audit.device))
        diff, where = state_difference(states[0], states[1])
        return {"trained": True, "weight_diff": diff, "weight_where": where,
                "output_diff": max_difference(outputs[0], outputs[1])}
    return audit.memo(("determinism", name), compute)


def golden_logits(audit: AuditSession, name: str, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(probe inputs, logits of the first seed's model on them) at float32 or bfloat16 autocast."""
    probe = audit.data.x_val[: audit.config.numerical.golden_probe]
    model = audit.zoo.models(name)[0].module
    if dtype == "float32":
        return probe, predict_logits(model, probe, audit.device)
    with torch.no_grad(), torch.autocast(audit.device.type, dtype=torch.bfloat16):
        return probe, model.eval()(probe.to(audit.device)).float().cpu()


def n_parameters(audit: AuditSession, name: str) -> int:
    return audit.zoo.models(name)[0].n_parameters


# cached measurements follow the code that makes them (the FFN search included; and the trainer they run)
_CODE_DIGEST = code_digest(sys.modules[__name__], numerical_methods, activations, train_module, evaluation_rows)
_OP_DIGEST = code_digest(sys.modules[__name__], numerical_methods, nn_module)  # the op lives in training/nn.py
