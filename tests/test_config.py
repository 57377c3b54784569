import pytest

from swiglu_audit.config import DEFAULT_POLICY, OPT_PROFILE, OPT_SEEDS, build_config, read_pyproject_table
from swiglu_audit.errors import ConfigError, SwigluAuditError


def test_profiles_set_seeds_and_families():
    quick, standard, full = (build_config(profile=p) for p in ("quick", "standard", "full"))
    assert len(quick.seeds) >= 2 and quick.families == ("mlp",)
    assert standard.seeds == (0, 1, 2) and standard.families == ("mlp", "vit")
    assert len(full.seeds) > len(standard.seeds)
    assert full.adversarial.steps > standard.adversarial.steps > quick.adversarial.steps


def test_precedence_profile_then_table_then_command_line():
    table = {"profile": "quick", "seeds": [5, 6], "training": {"epochs": 3}, "device": "cpu"}
    c = build_config(table)
    assert c.profile == "quick" and c.seeds == (5, 6) and c.training.epochs == 3
    assert c.training.batch_size == 64  # untouched keys keep the profile default
    c = build_config(table, profile="standard", seeds="1,2,3")
    assert c.profile == "standard" and c.seeds == (1, 2, 3) and c.training.epochs == 3


def test_policy_defaults_and_override():
    c = build_config({"policy": {"max_robust_accuracy_drop": 0.1, "fail_on_warn": True}})
    assert c.policy["max_robust_accuracy_drop"] == 0.1 and c.policy["fail_on_warn"] is True
    assert c.policy["alpha"] == DEFAULT_POLICY["alpha"]


@pytest.mark.parametrize("table, words", [
    ({"profil": "quick"}, ["profil", "known keys"]),
    ({"training": {"epoch": 3}}, ["training", "epoch"]),
    ({"training": {"epochs": "ten"}}, ["training.epochs", "integer"]),
    ({"policy": {"alpha": 2.0}}, ["alpha"]),
    ({"policy": {"max_drop": 1}}, ["policy", "max_drop"]),
    ({"seeds": []}, ["seeds"]),
    ({"seeds": [1, 1]}, ["seeds", "repeat"]),
    ({"families": ["cnn"]}, ["families", "cnn"]),
    ({"device": "tpu"}, ["--swiglu-audit-device", "tpu"]),
    ({"dataset": "no_colon_here"}, ["dataset", "package.module:callable"]),
    ({"models": [{"name": "a", "factory": "m:f", "role": "candidate"}]}, ["baseline"]),
    ({"models": [{"name": "a", "factory": "m:f"}, {"name": "b", "factory": "m:g"}]}, ["candidate"]),
    ({"models": [{"name": "a", "factory": "m:f", "role": "boss"}, {"name": "b", "factory": "m:g"}]}, ["role"]),
    ({"statistics": {"bootstrap": 10}}, ["statistics", "bootstrap", "1000"]),
    ({"statistics": {"replicates": 1000}}, ["statistics", "replicates", "known keys are bootstrap, max_seeds, seed"]),
    ({"adversarial": {"budgets": []}}, ["adversarial", "budgets", "non-empty list"]),
    ({"adversarial": {"attacks": ["pgd", 3]}}, ["adversarial.attacks", "strings"]),
    ({"poisoning": {"flip_rates": [0.2, 1.5]}}, ["poisoning", "flip_rates", "(0, 1)"]),
    ({"poisoning": "fast"}, ["poisoning", "must be a table"]),
    ({"numerical": {"implementations": {"mine": "no_colon"}}}, ["implementations", "mine", "package.module:callable"]),
])
def test_malformed_config_names_the_key(table, words):
    with pytest.raises(ConfigError) as info:
        build_config(table)
    for word in words:
        assert word in str(info.value)
    assert isinstance(info.value, pytest.UsageError) and isinstance(info.value, SwigluAuditError)


def test_bad_profile_and_seeds_on_command_line():
    with pytest.raises(ConfigError, match=OPT_PROFILE):
        build_config(profile="huge")
    with pytest.raises(ConfigError, match=OPT_SEEDS):
        build_config(seeds="a,b")


def test_user_models_turn_off_builtin_zoo_unless_asked():
    models = [{"name": "mine", "factory": "pkg.m:make", "role": "candidate"},
              {"name": "base", "factory": "pkg.m:make_base"}]
    assert build_config({"models": models}).families == ()
    assert build_config({"models": models, "include_builtin_zoo": True}).families == ("mlp", "vit")


def test_read_pyproject_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit]\nprofile = 'quick'\n")
    assert read_pyproject_table(tmp_path) == {"profile": "quick"}
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_pyproject_table(tmp_path)


def test_relative_paths_resolve_against_project_root(tmp_path):
    c = build_config({"report_dir": "out", "cache_dir": "ckpt"}, project_root=tmp_path)
    assert c.report_dir == tmp_path / "out" and c.cache_dir == tmp_path / "ckpt"


def test_profiles_are_the_shipped_base_with_each_profiles_overrides():
    from swiglu_audit.settings import profile_defaults

    base = profile_defaults("standard")
    quick = build_config(profile="quick")
    # what quick overrides differs; what it does not inherit from the base
    assert quick.training.epochs == 12 and base["training"]["epochs"] == 30
    assert quick.training.learning_rate == base["training"]["learning_rate"]
    assert quick.adversarial.eps == base["adversarial"]["eps"] and quick.adversarial.steps == 5
    assert build_config(profile="full").poisoning.families == ("mlp", "vit", "user")


def test_sections_are_typed_frozen_and_echo_as_json():
    import dataclasses
    import json

    c = build_config({"training": {"learning_rate": 1}, "poisoning": {"flip_rates": [0.2, 0.05, 0.2]}})
    assert c.training.learning_rate == 1.0 and isinstance(c.training.learning_rate, float)
    assert c.poisoning.flip_rates == (0.05, 0.2)  # a set of rates, in order
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.training.epochs = 1  # type: ignore[misc]
    echoed = json.loads(json.dumps(c.to_dict()))
    assert echoed["poisoning"]["flip_rates"] == [0.05, 0.2] and echoed["statistics"] == {"bootstrap": 1000, "seed": 0, "max_seeds": 8}


def test_statistics_section_sets_the_resamples_of_replicate_metrics():
    import numpy as np

    from swiglu_audit.methods.ood_metrics import auroc_estimate
    from swiglu_audit.session import AuditSession

    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1, 1, (3, 60)), rng.normal(0, 1, (3, 60))
    few = AuditSession(build_config({"statistics": {"bootstrap": 100}, "device": "cpu"}, profile="quick")).statistics
    many = AuditSession(build_config({"statistics": {"bootstrap": 4000, "seed": 3}, "device": "cpu"}, profile="quick")).statistics
    assert (few.n_boot, many.n_boot, many.seed) == (100, 4000, 3)
    a = auroc_estimate(s_in, s_out, few.level, few.n_boot, few.seed)
    b = auroc_estimate(s_in, s_out, many.level, many.n_boot, many.seed)
    assert a.value == b.value and (a.ci_low, a.ci_high) != (b.ci_low, b.ci_high)


def test_alpha_follows_the_confidence_level_and_the_two_cannot_disagree():
    assert build_config({"policy": {"confidence_level": 0.9}}).policy["alpha"] == pytest.approx(0.1)
    assert build_config({"policy": {"alpha": 0.01}}).policy["confidence_level"] == pytest.approx(0.99)
    with pytest.raises(ConfigError, match="alpha = 0.05 and confidence_level = 0.9 disagree"):
        build_config({"policy": {"alpha": 0.05, "confidence_level": 0.9}})


def _usage_error(table=None, *words, **options):
    """The ConfigError (a pytest usage error: exit 4) that `table` raises; it names every word."""
    with pytest.raises(ConfigError) as info:
        build_config(table, **options)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert isinstance(info.value, pytest.UsageError)
    return info.value


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("table, key", [
    ({"policy": {"max_robust_accuracy_drop": NAN}}, "policy.max_robust_accuracy_drop"),
    ({"policy": {"max_aurc": INF}}, "policy.max_aurc"),
    ({"policy": {"min_trigger_anomaly_index": INF}}, "policy.min_trigger_anomaly_index"),
    ({"adversarial": {"eps": INF}}, "adversarial.eps"),
    ({"adversarial": {"budgets": [0.1, NAN]}}, "adversarial.budgets"),
    ({"training": {"learning_rate": INF}}, "training.learning_rate"),
    ({"training": {"weight_decay": NAN}}, "training.weight_decay"),  # was "must not be negative"
    ({"ood": {"odin_temperature": INF}}, "ood.odin_temperature"),
    ({"max_minutes": INF}, "max_minutes"),
    ({"gates": {"default": "inf"}}, "gates] default"),
])
def test_non_finite_numbers_are_usage_errors(table, key):
    # nan and inf would reach report.json, whose writer refuses them after the whole audit ran
    _usage_error(table, key, "finite")


def test_non_finite_toml_literals_stop_the_audit(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit.policy]\nmax_robust_accuracy_drop = nan\n")
    _usage_error(read_pyproject_table(tmp_path), "max_robust_accuracy_drop", "finite")
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit.adversarial]\neps = inf\n")
    _usage_error(read_pyproject_table(tmp_path), "adversarial.eps", "finite")


@pytest.mark.parametrize("key, value, allowed", [
    ("max_aurc", 1.5, "[0, 1]"),
    ("warn_below_ood_auroc", -0.1, "[0, 1]"),
    ("max_mia_tpr_at_1pct_fpr", 2.0, "[0, 1]"),
    ("efficiency_target_accuracy", 1.2, "[0, 1]"),
    ("max_efficiency_loss", -0.1, "at least 0"),
    ("max_nondeterminism", -1e-6, "at least 0"),
    ("golden_tolerance_float32", -1.0, "at least 0"),
    ("min_fp16_headroom", 0.5, "at least 1"),
    ("max_ffn_outlier_ratio", 0.0, "at least 1"),
    ("min_efficiency_gain", 1.0, "[0, 1)"),
])
def test_policy_values_outside_their_range(key, value, allowed):
    _usage_error({"policy": {key: value}}, f"policy] {key} = {value}", allowed, "the default is")


@pytest.mark.parametrize("table, key", [
    ({"report_dir": 5}, "report_dir"),
    ({"report_dir": ""}, "report_dir"),
    ({"history_dir": ["a"]}, "history_dir"),
    ({"history_dir": " "}, "history_dir"),
    ({"cache_dir": ""}, "cache_dir"),
    ({"compare": ""}, "compare"),
    ({"numerical": {"golden_dir": ""}}, "golden_dir"),
    ({"models": [{"name": "a", "factory": "m:f", "role": "candidate", "weights": 5},
                 {"name": "b", "factory": "m:g"}]}, "weights"),
    ({"models": [{"name": "a", "factory": "m:f", "role": "candidate"},
                 {"name": "b", "factory": "m:g", "weights": ""}]}, "weights"),
])
def test_paths_must_be_non_empty_strings(table, key):
    # a number or a list raised TypeError (INTERNALERROR), and "" meant the project root or no weights
    _usage_error(table, key)


@pytest.mark.parametrize("table, options, where", [
    ({"seeds": [-1]}, {}, "[tool.swiglu_audit] seeds"),
    ({"seeds": [0, 2**32]}, {}, "[tool.swiglu_audit] seeds"),
    ({"seeds": [True, False]}, {}, "[tool.swiglu_audit] seeds"),
    ({"seeds": [0, True]}, {}, "[tool.swiglu_audit] seeds"),
    ({}, {"seeds": "0,-1"}, OPT_SEEDS),
    ({"statistics": {"seed": 2**32}}, {}, "statistics] seed"),
])
def test_seeds_are_integers_numpy_and_scikit_learn_accept(table, options, where):
    # scikit-learn's KMeans refused -1 only after every model had trained
    _usage_error(table, where, str(2**32 - 1), **options)


@pytest.mark.parametrize("section, key", [
    ("adversarial", "steps"), ("adversarial", "n_examples"), ("adversarial", "square_queries"),
    ("adversarial", "cw_steps"), ("adversarial", "apgd_steps"),
    ("poisoning", "scan_steps"),
    ("ood", "n_examples"),
    ("numerical", "n_examples"), ("numerical", "op_examples"), ("numerical", "golden_probe"),
    ("numerical", "determinism_epochs"),
])
def test_counts_that_must_be_positive(section, key):
    # an attack or scan with no iterations does nothing and overstates robustness; the rest crash later
    _usage_error({section: {key: 0}}, f"{section}] {key} = 0", "at least 1", "the default is")


def test_an_l2_attack_needs_a_budget():
    _usage_error({"adversarial": {"eps_l2": 0.0}}, "eps_l2", "positive")


def test_ood_bootstrap_needs_as_many_replicates_as_the_statistics_bootstrap():
    _usage_error({"ood": {"bootstrap": 99}}, "ood] bootstrap = 99", "100")
    assert build_config({"ood": {"bootstrap": 100}}).ood.bootstrap == 100


def test_an_audit_without_models_is_a_usage_error():
    # no per-model check would run, and the audit would PASS
    _usage_error({"include_builtin_zoo": False}, "include_builtin_zoo", "[[tool.swiglu_audit.models]]")


def test_defaults_build_and_lie_in_their_ranges():
    from swiglu_audit.settings import POLICY_RANGES

    for profile in ("quick", "standard", "full"):
        build_config(profile=profile)
    numbers = {k for k, v in DEFAULT_POLICY.items() if not isinstance(v, bool)}
    assert set(POLICY_RANGES) == numbers  # every policy number is range-checked
    assert all(POLICY_RANGES[k].holds(DEFAULT_POLICY[k]) for k in numbers)
    # the zeros that mean something still build: no early stopping, every seed, no budget, seed 0
    build_config({"poisoning": {"early_stopping_patience": 0, "cheaper_seeds": 0, "backdoor_target": 0},
                  "statistics": {"seed": 0}, "fairness": {"group_feature": 0}, "max_minutes": 0,
                  "seeds": [0, 2**32 - 1], "policy": {"max_leakage_share": 0.0, "min_efficiency_gain": 0.0}})


@pytest.mark.parametrize("gate", ["-0.02", "-5%"])
def test_a_negative_gate_is_a_usage_error(gate):
    # the default is no worsening at all: a gate only loosens it
    _usage_error({"gates": {"default": gate}}, "gates] default", "0 or more")


@pytest.mark.parametrize("table, key", [
    ({"training": {"learning_rate": 0.0}}, "learning_rate = 0.0 must be positive"),
    ({"adversarial": {"eps": 0.1, "large_eps": 0.1}}, "large_eps = 0.1 must exceed eps = 0.1"),
    # a leaked test input with any change passed the leakage check; ODIN without its perturbation
    ({"poisoning": {"near_duplicate_rms": 0.0}}, "near_duplicate_rms = 0.0 and near_duplicate_ratio = 0.35 must be positive"),
    ({"poisoning": {"near_duplicate_ratio": 0.0}}, "near_duplicate_ratio = 0.0 must be positive"),
    ({"ood": {"odin_eps": 0.0}}, "odin_eps = 0.0 must be positive"),
])
def test_settings_that_would_make_a_check_meaningless_are_usage_errors(table, key):
    _usage_error(table, key, key)


def test_one_cheaper_seed_is_a_usage_error():
    # the poisoned models' floors would rest on one training run (0: every seed; 2 or more)
    _usage_error({"poisoning": {"cheaper_seeds": 1}}, "cheaper_seeds = 1 must be 0 (every seed) or at least 2")
