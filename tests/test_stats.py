import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiglu_audit.stats import bootstrap_mean, interval_and_p, paired_comparison


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_examples():
    rng = np.random.default_rng(1)
    small = rng.random((3, 50)) < 0.7
    large = rng.random((3, 2000)) < 0.7
    a, b = bootstrap_mean(small), bootstrap_mean(large)
    assert a.ci_low <= a.value <= a.ci_high and b.ci_low <= b.value <= b.ci_high
    assert (b.ci_high - b.ci_low) < (a.ci_high - a.ci_low)
    assert abs(b.value - 0.7) < 0.03 and a.n_seeds == 3 and a.n_examples == 50


def test_seed_variation_widens_the_interval():
    # same examples, but seeds that disagree wildly: the two-level bootstrap must show it
    steady = np.tile(np.arange(200) % 2, (3, 1))
    shaky = np.stack([np.ones(200), np.zeros(200), np.arange(200) % 2])
    assert (bootstrap_mean(shaky).ci_high - bootstrap_mean(shaky).ci_low) > \
           2 * (bootstrap_mean(steady).ci_high - bootstrap_mean(steady).ci_low)


def test_identical_models_are_not_significantly_different():
    m = (np.random.default_rng(0).random((3, 300)) < 0.6).astype(float)
    cmp = paired_comparison(m, m)
    assert cmp.difference == 0 and cmp.p_value == 1.0 and not cmp.significant


def test_a_clear_gap_is_significant_with_the_right_sign():
    rng = np.random.default_rng(0)
    worse = (rng.random((3, 400)) < 0.5).astype(float)
    better = np.maximum(worse, (rng.random((3, 400)) < 0.4))
    cmp = paired_comparison(worse, better)
    assert cmp.difference < -0.1 and cmp.ci_high < 0 and cmp.p_value < 0.001 and cmp.significant


def test_interval_and_p_by_hand():
    # 40 replicates, 1 of them <= 0: p = 2 * 1/40 = 0.05, not below alpha = 0.05, and the 95%
    # interval (one replicate beyond each end allowed) still reaches down to it
    diffs = np.array([-0.1] + [0.01 * k for k in range(1, 40)])
    lo, hi, p = interval_and_p(diffs, 0.95)
    assert p == pytest.approx(0.05) and lo == pytest.approx(-0.1) and hi == pytest.approx(0.39)
    # 80 replicates, the same one <= 0: p = 0.025 < 0.05, and the interval excludes 0
    lo, hi, p = interval_and_p(np.array([-0.1] + [0.005 * k for k in range(1, 80)]), 0.95)
    assert p == pytest.approx(0.025) and lo == pytest.approx(0.005)
    assert interval_and_p(np.zeros(10), 0.95)[2] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(10, 120), st.sampled_from([200, 400, 1000]))
def test_p_value_and_interval_never_contradict(seed, seeds, n, n_boot):
    """One two-level design for both: p < alpha exactly when the (1 - alpha) interval excludes 0."""
    rng = np.random.default_rng(seed)
    p_a, p_b = rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9)
    a = (rng.random((seeds, n)) < p_a).astype(float)
    b = (rng.random((seeds, n)) < p_b).astype(float)
    cmp = paired_comparison(a, b, level=0.95, alpha=0.05, n_boot=n_boot, seed=seed)
    assert (cmp.p_value < 0.05) == (not cmp.ci_low <= 0 <= cmp.ci_high)


def test_seeds_needed_grows_as_the_seeds_disagree_and_asks_for_examples_when_they_are_the_problem():
    rng = np.random.default_rng(0)
    base = (rng.random((3, 2000)) < 0.7).astype(float)
    other = (rng.random((3, 2000)) < 0.7).astype(float)  # independent per-example outcomes
    steady = paired_comparison(base, base[::-1])
    noisy = paired_comparison(base * np.array([[1.0], [0.8], [0.6]]), base)
    few = paired_comparison(base[:, :20], other[:, :20])
    assert steady.seeds_needed(0.05)[0] == 2
    n_noisy, _ = noisy.seeds_needed(0.05)
    assert n_noisy is not None and n_noisy > 3
    assert few.seeds_needed(0.05)[0] is None and "more test examples" in few.seeds_needed(0.05)[1]
    assert paired_comparison(base[:1], base[1:2]).seeds_needed(0.05)[0] is None


def test_an_a_a_test_of_identically_built_models_gives_no_more_false_alarms_than_alpha():
    """Ten A/A comparisons: two sets of three MLPs built the same way, differing only in their
    initialisation seeds, compared on clean test accuracy like two architectures."""
    import torch

    from swiglu_audit.data import load_digits_data
    from swiglu_audit.nn import ModelConfig, build_model
    from swiglu_audit.train import Recipe, predict_logits, train_model

    data = load_digits_data()
    recipe = Recipe(epochs=3)

    def correct(seed):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(family="mlp", ffn="relu", d_model=32, ffn_hidden=64))
        train_model(model, data.x_train, data.y_train, recipe, seed, torch.device("cpu"))
        return (predict_logits(model, data.x_test, torch.device("cpu")).argmax(1) == data.y_test).numpy()

    runs = np.stack([correct(seed) for seed in range(60)]).astype(float)
    alarms = [paired_comparison(runs[6 * k:6 * k + 3], runs[6 * k + 3:6 * k + 6], seed=k).significant
              for k in range(10)]
    # P(3 or more of 10 | alpha = 0.05) is about 1%; the seeds are fixed, so this is deterministic
    assert sum(alarms) <= 2, alarms


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=60), st.integers(1, 4))
def test_interval_always_contains_the_estimate_and_stays_in_range(values, seeds):
    m = np.tile(np.array(values, dtype=float), (seeds, 1))
    est = bootstrap_mean(m, n_boot=200)
    assert 0 <= est.ci_low <= est.value <= est.ci_high <= 1


def test_comparison_refuses_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired_comparison(np.ones((2, 5)), np.ones((2, 6)))
