"""Numerical-regression suite: the SwiGLU op against a float64 reference (property-based) and by
gradcheck, half-precision parity and headroom, training determinism, golden outputs and checkpoint
round-trips."""

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
import torch

from swiglu_audit.checks.numerical import DETERMINISM, DEVICE_PARITY, GOLDEN, GRADCHECK, OP_PROPERTY, PRECISION_PARITY, ROUNDTRIP
from swiglu_audit.measure import numerical as measure
from swiglu_audit.methods.numerical import (
    FP16_MAX,
    check_implementation,
    device_parity,
    gradcheck_implementation,
    platform_key,
    probe_digest,
    state_difference,
)
from swiglu_audit.training.cache import CheckpointCache, fields_digest
from swiglu_audit.training.golden import compare_or_write, golden_path
from swiglu_audit.training.train import TRAINER_REVISION
from swiglu_audit.verdicts.risk import decided_finding


@pytest.mark.swiglu_audit_check(OP_PROPERTY)
def test_swiglu_op_property(audit, audit_impl, record_finding):
    impl, examples = measure.op_implementation(audit, audit_impl), audit.config.numerical.op_examples
    result = measure.op_outcome(audit, audit_impl, "property", {"examples": examples},
                                lambda: check_implementation(impl, examples))
    record_finding(decided_finding(
        OP_PROPERTY, [], {**result, "impl": audit_impl}, audit.config.policy, subject=audit_impl,
        value=result["worst_ratio"] if result["passed"] else None, details=result))


@pytest.mark.swiglu_audit_check(GRADCHECK)
def test_swiglu_gradcheck(audit, audit_impl, record_finding):
    impl = measure.op_implementation(audit, audit_impl)
    result = measure.op_outcome(audit, audit_impl, "gradcheck", {}, lambda: gradcheck_implementation(impl))
    record_finding(decided_finding(GRADCHECK, [], {**result, "impl": audit_impl}, audit.config.policy,
                                   subject=audit_impl, value=float(result["passed"]), details=result))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.swiglu_audit_check(PRECISION_PARITY)
def test_precision_parity(audit, audit_model, dtype, record_finding):
    policy = audit.config.policy
    result = measure.half_precision(audit, audit_model, dtype)
    flips = audit.statistics.mean(result["flips"])
    flip_key = "max_fp16_flip_rate" if dtype == "float16" else "max_bf16_flip_rate"
    info = PRECISION_PARITY if dtype == "float16" else \
        dataclasses.replace(PRECISION_PARITY, check="precision_parity_bf16")
    facts = {"model": audit_model, "dtype": dtype, "flips": flips.to_dict(), "finite": result["finite"],
             "headroom": result["headroom"], "ffn_absmax": result["ffn_absmax"], "fp16_max": FP16_MAX,
             "max_logit_deviation": result["max_logit_deviation"]}
    record_finding(decided_finding(
        info, [audit_model], facts, policy,
        value=flips.value, ci=(flips.ci_low, flips.ci_high), df=flips.df, se=flips.se, ci_level=flips.level,
        details={"judged": {"rule": "ceiling", "key": flip_key, "limit": policy[flip_key], "on": "interval"},
                 "dtype": dtype, "max_logit_deviation": result["max_logit_deviation"], "finite": result["finite"],
                 "ffn_absmax": result["ffn_absmax"], "headroom": result["headroom"], "flip_rate": flips.to_dict()}))


@pytest.mark.swiglu_audit_check(DETERMINISM)
def test_training_determinism(audit, audit_model, record_finding):
    result = measure.determinism(audit, audit_model)
    # a NaN difference is a divergence, not agreement (max(0.0, nan) is 0.0)
    worst = max(math.inf if math.isnan(d) else d for d in (result["weight_diff"], result["output_diff"])
                if d is not None)  # None: a pretrained model, whose weights were not trained twice
    facts = {**result, "model": audit_model, "seed": audit.config.seeds[0], "worst": worst,
             "device": audit.device.type}
    record_finding(decided_finding(DETERMINISM, [audit_model], facts, audit.config.policy,
                                   value=worst, details={**result, "device": audit.device.type}))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.swiglu_audit_check(GOLDEN)
def test_golden_outputs(audit, audit_model, dtype, record_finding):
    cfg = audit.config
    folder = cfg.project_path(cfg.numerical.golden_dir)
    platform = platform_key(audit.device, dtype)
    probe, logits = measure.golden_logits(audit, audit_model, dtype)
    # A golden file belongs to one model artefact: trained models are keyed by their recipe and
    # seed too (the quick and standard profiles train different models of the same name), models
    # loaded from weights only by the probe, so that an edited weights file is caught, not re-created.
    # (and by the trainer's revision: a change to how models train makes another artefact)
    # (fields_digest, not cache_key: committed golden files keep their names across cache formats)
    recipe = "" if audit.zoo.spec(audit_model).weights else "-recipe" + fields_digest(
        {"training": cfg.training.to_dict(), "seed": cfg.seeds[0], "trainer": TRAINER_REVISION})[:10]
    path = golden_path(folder, f"{platform}-probe{len(probe)}{recipe}", audit_model)
    result = compare_or_write(path, logits, probe_digest(probe), cfg.update_golden)
    info = GOLDEN if dtype == "float32" else dataclasses.replace(GOLDEN, check="golden_outputs_bf16")
    record_finding(decided_finding(info, [audit_model], {**result, "model": audit_model, "dtype": dtype}, cfg.policy,
                                   value=result["max_deviation"],
                                   details={**result, "platform": platform, "dtype": dtype, "path": str(path)}))


@pytest.mark.swiglu_audit_check(ROUNDTRIP)
def test_checkpoint_roundtrip(audit, audit_model, record_finding):
    state = {k: v.detach().cpu() for k, v in audit.zoo.models(audit_model)[0].module.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        cache = CheckpointCache(Path(tmp))
        cache.get_or_create("r" * 64, lambda: (state, {}))
        loaded, _, cached = cache.get_or_create("r" * 64, lambda: pytest.fail("the stored entry was not found"))
    assert cached
    differing = [k for k in state if k not in loaded or state[k].dtype != loaded[k].dtype
                 or not torch.equal(state[k], loaded[k])]
    diff, where = state_difference(state, loaded)
    facts = {"model": audit_model, "differing": differing, "n_tensors": len(state), "diff": diff, "where": where}
    record_finding(decided_finding(ROUNDTRIP, [audit_model], facts, audit.config.policy,
                                   value=float(len(differing)), details={"differing": differing, "n_tensors": len(state)}))


@pytest.mark.swiglu_audit_check(DEVICE_PARITY)
def test_cpu_vs_accelerator(audit, audit_model, record_finding):
    if audit.device.type == "cpu":
        pytest.skip("no accelerator in this audit: CPU vs CUDA/MPS parity is not measured (the coverage matrix says so)")
    x, _ = audit.data.evaluation_subset("test", audit.config.numerical.n_examples)
    runs = [device_parity(m.module, x) for m in audit.zoo.models(audit_model)]
    deviation = max(r["max_logit_deviation"] for r in runs)
    flips = audit.statistics.mean([r["flips"] for r in runs])
    facts = {"model": audit_model, "device": audit.device.type, "deviation": deviation, "flips": flips.to_dict()}
    record_finding(decided_finding(DEVICE_PARITY, [audit_model], facts, audit.config.policy,
                                   value=deviation, details={"device": audit.device.type, "flip_rate": flips.to_dict()}))
