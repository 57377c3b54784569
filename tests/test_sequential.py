"""seeds = "auto": the looks, their level, and the decision loop, on a stand-in session whose
comparison narrows as seeds are added (no training: the loop's logic alone)."""

import dataclasses
import types

import pytest

from swiglu_audit.checks.adversarial import WORST_CASE_COMPARISON
from swiglu_audit.config import build_config
from swiglu_audit.errors import ConfigError
from swiglu_audit.verdicts.sequential import judged_comparison, look_level, looks_for
from swiglu_audit.verdicts.stats import Comparison

_NOT_MASKED = lambda session: {"masked_models": {}, "baseline": "b"}  # noqa: E731  the modifiers' facts: no model masked


def test_looks_grow_to_max_seeds_and_split_the_error():
    assert looks_for(3, 8) == [3, 5, 8]
    assert looks_for(2, 8) == [2, 4, 6, 8]
    assert looks_for(5, 5) == [5]
    assert look_level(0.95, 3) == pytest.approx(1 - 0.05 / 3)
    with pytest.raises(ValueError):
        looks_for(4, 3)


class _Session:
    """What judged_comparison reads of an AuditSession, with interval half-width 0.2 / seeds."""

    def __init__(self, centre: float, n_seeds: int = 3, auto: bool = True, max_seeds: int = 8, weights=False):
        config = build_config({"seeds": "auto" if auto else [0, 1, 2], "statistics": {"max_seeds": max_seeds}},
                              profile="standard")
        self.config, self.centre, self.n_seeds = config, centre, n_seeds
        self.statistics = types.SimpleNamespace(level=0.95)
        self.zoo = types.SimpleNamespace(spec=lambda name: types.SimpleNamespace(weights="w.pt" if weights else None))
        self.started, self.looks = 0.0, []

    def at_look(self, n_seeds, level):
        self.looks.append((n_seeds, level))
        view = _Session.__new__(_Session)
        view.__dict__.update(self.__dict__, n_seeds=n_seeds)
        return view


def _compare(session):
    half = 0.2 / session.n_seeds
    return Comparison(0.5 + session.centre, 0.5, session.centre, session.centre - half, session.centre + half,
                      0.5, 0.95, 0.05, session.n_seeds, 300, 0.01, 1e-4, 5.0)


def test_an_open_comparison_gets_more_seeds_until_it_is_decided():
    session = _Session(centre=0.0)  # half-width 0.067 at 3 seeds: crosses -0.05; 0.04 at 5: inside
    finding = judged_comparison(session, WORST_CASE_COMPARISON, ["a", "b"], "robust accuracy", _compare, facts=_NOT_MASKED)
    seq = finding.details["sequential"]
    assert finding.status == "PASS" and seq["decided"] and seq["seeds_used"] == 5
    assert [h["seeds"] for h in seq["history"]] == [3, 5] and [h["status"] for h in seq["history"]] == ["WARN", "PASS"]
    assert seq["planned_looks"] == [3, 5, 8]
    assert all(level == pytest.approx(1 - 0.05 / 3) for _, level in session.looks)
    assert seq["stopped"] == "decided"


def test_a_decided_comparison_takes_no_extra_seed_and_an_open_one_stops_at_max_seeds():
    clear = _Session(centre=0.2)
    assert judged_comparison(clear, WORST_CASE_COMPARISON, ["a", "b"], "x", _compare, facts=_NOT_MASKED).details["sequential"]["seeds_used"] == 3
    at_tolerance = _Session(centre=-0.05)
    finding = judged_comparison(at_tolerance, WORST_CASE_COMPARISON, ["a", "b"], "x", _compare, facts=_NOT_MASKED)
    assert finding.status == "WARN" and finding.details["sequential"]["stopped"] == "max_seeds reached"


def test_a_comparison_no_seed_count_can_decide_takes_no_extra_seed():
    """Compute to target between the same two curve points in both arms: the bracket holds the
    tolerance, so training 5 and 8 seeds would change nothing (it did, before)."""
    def bracketed(session):
        return dataclasses.replace(_compare(session), bracket=(-0.2, 0.1))
    session = _Session(centre=0.0)
    finding = judged_comparison(session, WORST_CASE_COMPARISON, ["a", "b"], "x", bracketed, facts=_NOT_MASKED)
    seq = finding.details["sequential"]
    assert finding.status == "WARN" and seq["seeds_used"] == 3 and {n for n, _ in session.looks} == {3}
    assert seq["stopped"].startswith("no number of seeds decides it") and "curve's points" in seq["stopped"]
    missed = lambda session: dataclasses.replace(_compare(session), undecidable="a seed never reached it")  # noqa: E731
    finding = judged_comparison(_Session(centre=0.0), WORST_CASE_COMPARISON, ["a", "b"], "x", missed, facts=_NOT_MASKED)
    assert finding.details["sequential"]["seeds_used"] == 3
    assert finding.details["comparison"]["seeds_to_decide_note"] == "a seed never reached it"


def test_without_auto_or_with_pretrained_weights_there_is_one_look():
    for session in (_Session(centre=0.0, auto=False), _Session(centre=0.0, weights=True)):
        finding = judged_comparison(session, WORST_CASE_COMPARISON, ["a", "b"], "x", _compare, facts=_NOT_MASKED)
        assert finding.status == "WARN" and "sequential" not in finding.details and session.looks == []


def test_auto_seeds_in_the_config():
    config = build_config({"seeds": "auto", "statistics": {"max_seeds": 6}}, profile="quick")
    assert config.auto_seeds and config.seeds == (0, 1) and config.statistics.max_seeds == 6
    assert build_config(seeds="auto").auto_seeds
    with pytest.raises(ConfigError, match="max_seeds"):
        build_config({"statistics": {"max_seeds": 1}})
