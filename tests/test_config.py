import pytest

from swiglu_audit.config import DEFAULT_POLICY, OPT_PROFILE, OPT_SEEDS, build_config, read_pyproject_table
from swiglu_audit.errors import ConfigError, SwigluAuditError


def test_profiles_set_seeds_and_families():
    quick, standard, full = (build_config(profile=p) for p in ("quick", "standard", "full"))
    assert len(quick.seeds) >= 2 and quick.families == ("mlp",)
    assert standard.seeds == (0, 1, 2) and standard.families == ("mlp", "vit")
    assert len(full.seeds) > len(standard.seeds)
    assert full.adversarial["steps"] > standard.adversarial["steps"] > quick.adversarial["steps"]


def test_precedence_profile_then_table_then_command_line():
    table = {"profile": "quick", "seeds": [5, 6], "training": {"epochs": 3}, "device": "cpu"}
    c = build_config(table)
    assert c.profile == "quick" and c.seeds == (5, 6) and c.training["epochs"] == 3
    assert c.training["batch_size"] == 64  # untouched keys keep the profile default
    c = build_config(table, profile="standard", seeds="1,2,3")
    assert c.profile == "standard" and c.seeds == (1, 2, 3) and c.training["epochs"] == 3


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
