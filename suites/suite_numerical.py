"""Numerical-regression suite: the SwiGLU op against a float64 reference (property-based) and by
gradcheck, half-precision parity and headroom, training determinism, golden outputs and checkpoint
round-trips."""

import dataclasses
import tempfile
from pathlib import Path

import pytest
import torch

from swiglu_audit.cache import CheckpointCache, cache_key
from swiglu_audit.checks.numerical import DETERMINISM, DEVICE_PARITY, GOLDEN, GRADCHECK, OP_PROPERTY, PRECISION_PARITY, ROUNDTRIP
from swiglu_audit.golden import compare_or_write, golden_path
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
from swiglu_audit.risk import Status, judge_interval, make_finding


@pytest.mark.swiglu_audit_check(OP_PROPERTY)
def test_swiglu_op_property(audit, audit_impl, record_finding):
    impl = measure.op_implementation(audit, audit_impl)
    result = check_implementation(impl, audit.config.numerical.op_examples)
    if result["passed"]:
        status, reason = Status.PASS, (
            f"implementation '{audit_impl}' agrees with the float64 reference on {result['examples']} "
            f"generated cases; worst error {result['worst_ratio']:.3f} of the dtype's tolerance (limit 1)")
    else:
        failure = result["minimal_failure"]
        status, reason = Status.FAIL, (
            f"implementation '{audit_impl}' disagrees with the float64 reference in {failure['dtype']}, "
            f"shape {failure['shape']}: {failure['where']} (minimal example shrunk by hypothesis in the details)")
    record_finding(make_finding(
        OP_PROPERTY, [], status, reason, subject=audit_impl,
        threshold="|impl - reference| within the dtype's tolerance (ratio <= 1) and finite wherever the reference is representable",
        value=result["worst_ratio"] if result["passed"] else None, details=result))


@pytest.mark.swiglu_audit_check(GRADCHECK)
def test_swiglu_gradcheck(audit, audit_impl, record_finding):
    result = gradcheck_implementation(measure.op_implementation(audit, audit_impl))
    status = Status.PASS if result["passed"] else Status.FAIL
    reason = (f"gradcheck passed for '{audit_impl}' in float64" if result["passed"]
              else f"gradcheck failed for '{audit_impl}' in float64: {result['error']}")
    record_finding(make_finding(GRADCHECK, [], status, reason, subject=audit_impl,
                                threshold="analytic and finite-difference gradients agree (atol 1e-5)",
                                value=float(result["passed"]), details=result))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.swiglu_audit_check(PRECISION_PARITY)
def test_precision_parity(audit, audit_model, dtype, record_finding):
    policy = audit.config.policy
    result = measure.half_precision(audit, audit_model, dtype)
    flips = audit.statistics.mean(result["flips"])
    flip_key = "max_fp16_flip_rate" if dtype == "float16" else "max_bf16_flip_rate"
    max_flip, min_headroom = policy[flip_key], policy["min_fp16_headroom"]
    problems = []
    if not result["finite"]:
        problems.append(f"{dtype} logits contain NaN or infinity (overflow)")
    flip_verdict = judge_interval(flips.value, (flips.ci_low, flips.ci_high), max_flip, False, Status.FAIL)
    if flip_verdict is Status.FAIL:
        problems.append(f"{dtype} flip rate {flips.value:.4f} [{flips.ci_low:.4f}, {flips.ci_high:.4f}] exceeds "
                        f"{flip_key} = {max_flip} over its whole interval")
    if dtype == "float16" and result["headroom"] < min_headroom:
        problems.append(f"largest FFN activation {result['ffn_absmax']:.4g} leaves headroom "
                        f"{result['headroom']:.3g}x to the float16 maximum {FP16_MAX:.0f}, below "
                        f"min_fp16_headroom = {min_headroom}")
    if problems:
        status, reason = Status.FAIL, f"model '{audit_model}': " + "; ".join(problems)
    elif flip_verdict is Status.WARN:
        status, reason = Status.WARN, (
            f"inconclusive: {dtype} flip rate {flips.value:.4f}, interval [{flips.ci_low:.4f}, {flips.ci_high:.4f}], "
            f"reaches across {flip_key} = {max_flip}; more test examples or seeds would decide it")
    else:
        status, reason = Status.PASS, (
            f"{dtype} flip rate {flips.value:.4f} (interval [{flips.ci_low:.4f}, {flips.ci_high:.4f}]) is within "
            f"{flip_key} = {max_flip}; largest logit "
            f"deviation {result['max_logit_deviation']:.3g}; largest FFN activation "
            f"{result['ffn_absmax']:.4g} leaves {result['headroom']:.3g}x headroom to float16's maximum "
            f"(min_fp16_headroom = {min_headroom})")
    info = PRECISION_PARITY if dtype == "float16" else \
        dataclasses.replace(PRECISION_PARITY, check="precision_parity_bf16")
    record_finding(make_finding(
        info, [audit_model], status, reason,
        threshold=f"flip rate <= {flip_key} = {max_flip}" + (f"; headroom >= min_fp16_headroom = {min_headroom}" if dtype == "float16" else ""),
        value=flips.value, ci=(flips.ci_low, flips.ci_high), ci_level=flips.level,
        details={"judged": {"rule": "ceiling", "key": flip_key, "limit": max_flip, "on": "interval"},
                 "dtype": dtype, "max_logit_deviation": result["max_logit_deviation"], "finite": result["finite"],
                 "ffn_absmax": result["ffn_absmax"], "headroom": result["headroom"], "flip_rate": flips.to_dict()}))


@pytest.mark.swiglu_audit_check(DETERMINISM)
def test_training_determinism(audit, audit_model, record_finding):
    policy = audit.config.policy
    result = measure.determinism(audit, audit_model)
    exact = audit.device.type == "cpu"
    key = "max_nondeterminism" if exact else "max_nondeterminism_accelerator"
    limit = policy[key]
    worst = max(result["weight_diff"], result["output_diff"])
    if worst <= limit:
        status = Status.PASS
        reason = (f"two trainings of '{audit_model}' from seed {audit.config.seeds[0]} differ by at most "
                  f"{worst:.3g} in weights and outputs, within {key} = {limit}")
    else:
        status = Status.FAIL
        reason = (f"two trainings of '{audit_model}' from seed {audit.config.seeds[0]} differ: weight "
                  f"'{result['weight_where']}' by {result['weight_diff']:.3g}, outputs by "
                  f"{result['output_diff']:.3g}; above {key} = {limit}")
    if not result["trained"]:
        reason += " (pretrained weights: only the forward pass was repeated)"
    record_finding(make_finding(DETERMINISM, [audit_model], status, reason,
                                threshold=f"difference <= {key} = {limit} ({audit.device.type})",
                                value=worst, details={**result, "device": audit.device.type}))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.swiglu_audit_check(GOLDEN)
def test_golden_outputs(audit, audit_model, dtype, record_finding):
    cfg = audit.config
    tolerance_key = f"golden_tolerance_{dtype}"
    tolerance = cfg.policy[tolerance_key]
    folder = cfg.project_path(cfg.numerical.golden_dir)
    platform = platform_key(audit.device, dtype)
    probe, logits = measure.golden_logits(audit, audit_model, dtype)
    # A golden file belongs to one model artefact: trained models are keyed by their recipe and
    # seed too (the quick and standard profiles train different models of the same name), models
    # loaded from weights only by the probe, so that an edited weights file is caught, not re-created.
    recipe = "" if audit.zoo.spec(audit_model).weights else "-recipe" + cache_key(
        {"training": cfg.training.to_dict(), "seed": cfg.seeds[0]})[:10]
    path = golden_path(folder, f"{platform}-probe{len(probe)}{recipe}", audit_model)
    result = compare_or_write(path, logits, probe_digest(probe), cfg.update_golden)
    if result["action"] != "compared":
        status, reason = Status.WARN, f"model '{audit_model}' ({dtype}): {result['note']}"
    elif result["max_deviation"] <= tolerance:
        status, reason = Status.PASS, (f"model '{audit_model}' ({dtype}) logits deviate from the golden "
                                       f"file by at most {result['max_deviation']:.3g}, within {tolerance_key} = {tolerance}")
    else:
        status, reason = Status.FAIL, (f"model '{audit_model}' ({dtype}) logits deviate from the golden file "
                                       f"by {result['max_deviation']:.3g} at {result['where']}, above "
                                       f"{tolerance_key} = {tolerance}")
    info = GOLDEN if dtype == "float32" else dataclasses.replace(GOLDEN, check="golden_outputs_bf16")
    record_finding(make_finding(info, [audit_model], status, reason,
                                threshold=f"largest deviation <= {tolerance_key} = {tolerance}",
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
    status = Status.PASS if not differing else Status.FAIL
    reason = (f"all {len(state)} tensors of '{audit_model}' come back bitwise identical" if not differing
              else f"{len(differing)} tensors of '{audit_model}' change on save and load, e.g. '{where}' by {diff:.3g}")
    record_finding(make_finding(ROUNDTRIP, [audit_model], status, reason,
                                threshold="every tensor bitwise identical, same dtype and shape",
                                value=float(len(differing)), details={"differing": differing, "n_tensors": len(state)}))


@pytest.mark.swiglu_audit_check(DEVICE_PARITY)
def test_cpu_vs_accelerator(audit, audit_model, record_finding):
    if audit.device.type == "cpu":
        pytest.skip("no accelerator in this audit: CPU vs CUDA/MPS parity is not measured (the coverage matrix says so)")
    policy = audit.config.policy
    x = audit.data.x_test[: audit.config.numerical.n_examples]
    runs = [device_parity(m.module, x) for m in audit.zoo.models(audit_model)]
    deviation = max(r["max_logit_deviation"] for r in runs)
    flips = audit.statistics.mean([r["flips"] for r in runs])
    ok = deviation <= policy["max_device_logit_deviation"] and flips.value <= policy["max_device_flip_rate"]
    reason = (f"model '{audit_model}' on {audit.device.type} vs CPU: largest logit deviation {deviation:.3g} "
              f"(max_device_logit_deviation = {policy['max_device_logit_deviation']}), flip rate "
              f"{flips.value:.4f} (max_device_flip_rate = {policy['max_device_flip_rate']})")
    record_finding(make_finding(
        DEVICE_PARITY, [audit_model], Status.PASS if ok else Status.FAIL, reason,
        threshold=f"deviation <= max_device_logit_deviation = {policy['max_device_logit_deviation']}; "
                  f"flip rate <= max_device_flip_rate = {policy['max_device_flip_rate']}",
        value=deviation, details={"device": audit.device.type, "flip_rate": flips.to_dict()}))
