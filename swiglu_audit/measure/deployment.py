"""Deployment-precision measurements per model, over all training seeds, memoised per process:
the FFN's activation outliers (now, and over the training steps its record holds) and its
accuracy, prediction flips and robust accuracy after post-training quantisation.

The test inputs are the numerical suite's (`numerical.n_examples`); the robust accuracy replays
the adversarial suite's Linf worst case at its main budget, crafted on the float32 model of the
same seed: per input, the example of the first attack that broke the float model (PGD's where
none did). A quantised model has no gradient to attack: these are the examples an attacker who
holds the float weights brings to the shipped model."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ModelContractError
from ..methods import quantisation
from ..methods.quantisation import quantised_copy, quantised_weight_share, served_logits
from ..training import activations, evaluation_rows
from ..training.activations import activation_stats, captured_inputs, ffn_layers, row_peak_ratios
from ..training.cache import code_digest
from ..training.nn import eval_mode
from ..training.planned import Work
from . import adversarial as adversarial_measure

if TYPE_CHECKING:
    from ..session import AuditSession


def _inputs(audit: AuditSession) -> tuple[torch.Tensor, torch.Tensor]:
    n = audit.config.numerical.n_examples
    return audit.data.evaluation_subset("test", n)


def outliers(audit: AuditSession, name: str) -> dict:
    """{"layers": [names], "per_seed": [{layer: activation_stats}], "log_peak": seeds x examples
    matrix of log10(largest |hidden value| of the input / the layer's median |value|), the largest
    over layers, "curve": per seed [(step, {layer: stats})] from the training record}; "layers" is
    empty for a model without a findable FFN."""
    def measure():
        x, _ = _inputs(audit)
        per_seed, log_peaks = [], []
        names: list[str] = []
        for trained in audit.zoo.models(name):
            model = trained.module
            layers = ffn_layers(model)
            names = list(layers)
            if not layers:
                break
            chunks = [x[i:i + 256] for i in range(0, len(x), 256)]
            with torch.no_grad(), eval_mode(model), captured_inputs(layers) as seen:
                for chunk in chunks:
                    model(chunk.to(audit.device))
            stats, peaks = {}, []
            for layer, parts in seen.items():
                _check_batch_first(name, layer, parts, [len(c) for c in chunks])
                h = torch.cat(parts).cpu()  # (inputs, rows per input, channels)
                stats[layer] = activation_stats(h)
                if stats[layer]["median"] > 0:  # an all-zero (dead) layer has no outlier to rank
                    peaks.append(row_peak_ratios(h, stats[layer]["median"]))
            per_seed.append(stats)
            # every layer dead: ratio 0 (as activation_stats's), at the floor of the log
            peak = torch.stack(peaks).amax(0) if peaks else torch.zeros(len(x))
            log_peaks.append(torch.log10(peak.clamp_min(1e-30)).numpy())
        return ({"log_peak": np.stack(log_peaks)} if log_peaks else {}), {"layers": names, "per_seed": per_seed}

    def compute():
        models = audit.zoo.models(name)
        arrays, record = audit.cached_arrays("ffn-outliers", models, {"n": len(_inputs(audit)[0])}, _CODE_DIGEST,
                                             measure)
        curves = [[(p["step"], p["ffn"]) for p in trained.record.get("curve", []) if p.get("ffn")] for trained in models]
        return {"layers": record["layers"], "per_seed": record["per_seed"], "log_peak": arrays.get("log_peak"),
                "curve": curves if record["layers"] else []}
    return audit.memo(("ffn-outliers", name), compute)


def _check_batch_first(model: str, layer: str, parts: list[torch.Tensor], batch_sizes: list[int]) -> None:
    """The per-input peak needs one call of the layer per forward pass with the batch first."""
    calls = [len(p) for p in parts]
    if calls != batch_sizes:
        raise ModelContractError(
            f"FFN layer '{layer}' of '{model}' was called {len(parts)} time(s) on leading dimensions {calls[:4]} "
            f"for {len(batch_sizes)} batch(es) of {batch_sizes[:4]} inputs: the audit needs the layer called "
            "once per forward pass with the batch first (a sequence-first FFN, an FFN run twice or routed tokens "
            "cannot be read per input); mark another layer with swiglu_audit_ffn = True, or none")


def peak_ratio_replicates(log_peak: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(seeds x B) log10 of the largest per-input peak ratio on input resamples shared by the
    seeds: the largest value of a sample grows with the sample, so its interval must cover the
    inputs drawn, not only the seeds."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, log_peak.shape[1], size=(n_boot, log_peak.shape[1]))
    return np.stack([log_peak[:, idx].max(1) for idx in draws], axis=1)


def growth(curves: list[list[tuple[int, dict]]]) -> dict | None:
    """Over the training steps the records hold: the mean over seeds of the largest
    absmax/median ratio (over layers) at each recorded step, and where it grew most (the layer
    with the largest final ratio and the step after which its log ratio rose most). None where
    no record holds outlier points (weights loaded, not trained)."""
    curves = [c for c in curves if c]
    if not curves:
        return None
    steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    if not steps:
        return None

    def ratio(stats: dict) -> float:
        if stats.get("absmax") is None or stats.get("median") is None:
            return float("nan")  # not finite when it was recorded
        return stats["absmax"] / stats["median"] if stats["median"] else float("inf")

    by_step = [dict(c) for c in curves]
    points = [{"step": s, "ratio": float(np.mean([max(ratio(v) for v in seed[s].values()) for seed in by_step]))}
              for s in steps]
    final = by_step[0][steps[-1]]
    layer = max(final, key=lambda n: ratio(final[n]))
    logs = [float(np.mean([math.log10(max(ratio(seed[s][layer]), 1e-30)) for seed in by_step])) for s in steps]
    jumps = [logs[i + 1] - logs[i] for i in range(len(logs) - 1)]
    i = int(np.argmax(jumps)) if jumps else 0
    return {"curve": points, "layer": layer, "first_ratio": 10 ** logs[0], "final_ratio": 10 ** logs[-1],
            "grew_most_between": [steps[i], steps[min(i + 1, len(steps) - 1)]],
            "grew_most_factor": 10 ** jumps[i] if jumps else 1.0}


MATRICES = ("float_correct", "quantised_correct", "flips", "robust_float", "robust_quantised")


def quantised(audit: AuditSession, name: str, scheme: str) -> dict:
    """seeds x examples matrices: "float_correct", "quantised_correct", "flips" on the test
    inputs; "robust_float", "robust_quantised" on the adversarial suite's Linf worst-case examples (or
    "robust_error": why they could not be had); "how": the scheme in words; "weight_share": the share
    of the model's weights it quantised."""
    def compute():
        x, y = _inputs(audit)
        out: dict = {k: [] for k in MATRICES}
        try:
            adversarial = adversarial_measure.adversarial(audit, name)
            clean, y_adv = audit.data.evaluation_subset("test", audit.config.adversarial.n_examples)
            examples = adversarial["linf_worst_examples"]
        except ModelContractError as exc:
            clean, examples, y_adv, out["robust_error"] = None, None, None, str(exc)
        for k, trained in enumerate(audit.zoo.models(name)):
            q_model, q_device, out["how"] = quantised_copy(trained.module, scheme)
            # the least over the seeds (a share is read off values: a seed's weights could sit on the grid)
            out["weight_share"] = min(out.get("weight_share", 1.0), quantised_weight_share(trained.module, q_model))
            # the float32 reference on the quantised copy's device: int8 runs on the CPU, and a
            # GPU's float32 (TF32 matmuls) against a CPU's would count device differences as loss
            model = trained.module if q_device == audit.device else copy.deepcopy(trained.module).to(q_device)
            reference, shipped = served_logits(model, x, q_device), served_logits(q_model, x, q_device)
            if not torch.isfinite(shipped).all():
                out["non_finite"] = True
            out["float_correct"].append((reference.argmax(1) == y).numpy())
            out["quantised_correct"].append((shipped.argmax(1) == y).numpy())
            out["flips"].append((reference.argmax(1) != shipped.argmax(1)).numpy())
            if examples is not None:
                # robust: right on the clean input and on its worst-case example, as the adversarial suite counts it
                for key, m, on in (("robust_float", model, q_device), ("robust_quantised", q_model, q_device)):
                    right = lambda inputs: (served_logits(m, inputs, on).argmax(1) == y_adv).numpy()  # noqa: B023
                    out[key].append(right(clean) & right(examples[k]))
        arrays = {k: np.stack(v) for k, v in out.items() if isinstance(v, list) and v}
        return arrays, {k: v for k, v in out.items() if not isinstance(v, list)}

    def cached() -> dict:
        # On disk like the attack results: a warm audit re-judges without quantising again. The
        # robust outcomes replay the adversarial suite's examples: its settings and code are in
        # the key; int8's kernels are the CPU engine's. A run whose adversarial examples could
        # not be had is not stored: once the model is mended, they are measured.
        settings = {"n_examples": audit.config.numerical.n_examples,
                    "adversarial": dataclasses.asdict(audit.config.adversarial),
                    "attack_code": adversarial_measure.CODE_DIGEST,
                    "engine": torch.backends.quantized.engine}
        models = audit.zoo.models(name)
        try:
            adversarial_measure.adversarial(audit, name)
        except ModelContractError:
            arrays, record = compute()
        else:
            arrays, record = audit.cached_arrays(f"quantised-{scheme}", models, settings, _CODE_DIGEST, compute)
        # boolean outcomes, as the statistics expect them (their 0/1 floors depend on it)
        outcomes = {k: np.zeros((0, 0), bool) for k in MATRICES}  # none measured: an empty matrix
        return {**outcomes, **{k: v.astype(bool) for k, v in arrays.items()}, **record}
    return audit.memo(("quantised", name, scheme), cached)


def prefetch(audit: AuditSession, name: str) -> None:
    """The quantised outcomes of every scheme (cached on disk), after the adversarial suite's
    worst-case examples they replay: the xdist prefetch and the suite's job."""
    from ..methods.quantisation import SCHEMES

    for scheme in SCHEMES:
        quantised(audit, name, scheme)


def planned_passes(config) -> int:
    """Examples passed forward per model and seed, as `outliers` and `quantised` run them (what
    the plan counts): the outlier pass, and per scheme the float32 and the quantised model on the
    test inputs, and on the adversarial inputs clean and attacked."""
    from ..methods.quantisation import SCHEMES

    n_test, n_adversarial = config.numerical.n_examples, config.adversarial.n_examples
    return n_test + len(SCHEMES) * 2 * (n_test + 2 * n_adversarial)


def planned_work(audit: AuditSession, name: str) -> Work:
    """The deployment suite's declared work on one model: `planned_passes` for every seed."""
    return Work(forward_examples=len(audit.zoo.trained_seeds(name)) * planned_passes(audit.config))


# the quantised measurements' and the outliers' cache entries follow the code that makes them
_CODE_DIGEST = code_digest(sys.modules[__name__], quantisation, activations, evaluation_rows)
