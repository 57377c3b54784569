"""The plan before training: counts that follow the suites, --swiglu-audit-plan, and max_minutes."""

import pytest

from swiglu_audit.config import OPT_ENABLE, OPT_MAX_MINUTES, OPT_PLAN, build_config
from swiglu_audit.plan import attack_passes


def test_attack_passes_follow_the_attack_list_and_the_curves():
    config = build_config({"profile": "quick", "adversarial": {"attacks": ["fgsm", "pgd", "square"]}})
    cfg = config.adversarial
    grads, forwards = attack_passes(config)
    # FGSM 1, PGD `steps`; the Linf curve (one PGD per budget), three L2 budgets, three sanity runs
    assert grads == 1 + cfg["steps"] + cfg["steps"] * (len(cfg["budgets"]) + 3) + cfg["steps"] * 3
    assert forwards == cfg["square_queries"]


def test_plan_only_prints_the_plan_and_trains_nothing(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "empty-cache"))
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, OPT_PLAN, "-p", "no:cacheprovider")
    assert result.ret == 0
    out = result.stdout.str()
    assert "swiglu-audit plan (cpu, 1 worker(s)): about" in out
    # the tiny audit: 2 seeds; 4 poisoned sets (flip, targeted, backdoor, clean-label) per seed
    for model in ("swiglu-mlp", "relu-mlp"):
        assert f"{model}: trainings 2 clean, 8 poisoning, 2 determinism (0 cached)" in out
    assert not list((tmp_path / "empty-cache").rglob("*.safetensors"))  # nothing trained
    assert not (tiny_project.path / "reports" / "report.json").exists()


def test_a_plan_over_the_budget_stops_before_training_and_says_what_fits(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "empty-cache"))
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, f"{OPT_MAX_MINUTES}=0.0001", "-p", "no:cacheprovider")
    assert result.ret == 4
    err = result.stderr.str()
    assert "more than max_minutes = 0.0001" in err and "does NOT fit" in err
    assert "no retraining of the mlp models on poisoned data" in err  # the tiny audit poisons only the MLPs
    assert "no retraining of the user models" not in err  # no user model here: dropping it would cut nothing
    assert "Traceback" not in err
    assert not list((tmp_path / "empty-cache").rglob("*.safetensors"))


@pytest.mark.parametrize("bad", ["-1", "\"ten\"", "true"])
def test_max_minutes_must_be_a_number_of_minutes(bad):
    import tomllib

    from swiglu_audit.errors import ConfigError

    with pytest.raises(ConfigError, match="max_minutes"):
        build_config(tomllib.loads(f"max_minutes = {bad}"))
