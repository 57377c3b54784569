import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiglu_audit.stats import bootstrap_mean, paired_comparison, paired_permutation_p


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


def test_permutation_p_by_hand():
    # four positive differences: 2 of the 16 sign patterns are at least as extreme
    p = paired_permutation_p(np.array([1.0, 1.0, 1.0, 1.0]), n_perm=20000, rng=np.random.default_rng(0))
    assert p == pytest.approx(2 / 16, abs=0.01)
    assert paired_permutation_p(np.zeros(10)) == 1.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=60), st.integers(1, 4))
def test_interval_always_contains_the_estimate_and_stays_in_range(values, seeds):
    m = np.tile(np.array(values, dtype=float), (seeds, 1))
    est = bootstrap_mean(m, n_boot=200)
    assert 0 <= est.ci_low <= est.value <= est.ci_high <= 1


def test_comparison_refuses_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired_comparison(np.ones((2, 5)), np.ones((2, 6)))
