"""The plan before training: counts that follow the suites, --swiglu-audit-plan, and max_minutes."""

import json
import os
from pathlib import Path

import pytest
from conftest import TINY_AUDIT_TOML

from swiglu_audit.config import OPT_ENABLE, OPT_MAX_MINUTES, OPT_PLAN, build_config
from swiglu_audit.measure.adversarial import planned_passes as attack_passes


@pytest.mark.parametrize("attacks", [["fgsm", "pgd", "square"], ["pgd_l2", "apgd_ce", "square"]])
def test_the_plan_counts_the_attack_runs_the_measurement_makes(monkeypatch, attacks):
    """The plan's count is the adversarial measurement's own declaration: checked against the runs
    `_attack_seeds` makes, each costed by its registry entry."""
    import types

    import numpy as np
    import torch

    from swiglu_audit.measure import adversarial
    from swiglu_audit.methods.attack_registry import AttackParams, attack_cost

    config = build_config({"profile": "quick", "adversarial": {"attacks": attacks}})
    cfg, params = config.adversarial, AttackParams.of(config.adversarial)
    spent = {"grads": 0, "forwards": 0}

    def fake_run(module, attack, x, y, params_, n_classes, seed, steps=None, eps=None, return_examples=False):
        import dataclasses

        run_params = dataclasses.replace(params, steps=steps) if steps else params
        grads, forwards = attack_cost(attack, run_params, n_classes)
        spent["grads"] += grads
        spent["forwards"] += forwards
        ones = np.ones(len(x), dtype=bool)
        return {"robust": ones, "clean": ones, "cost": {"attack": attack}, "examples": x}

    def gradient_stats(module, x, y):
        spent["grads"] += 1
        return {}

    monkeypatch.setattr(adversarial, "run_attack", fake_run)
    monkeypatch.setattr(adversarial, "input_gradient_stats", gradient_stats)
    monkeypatch.setattr(adversarial, "output_stats", lambda module, x: {})
    audit = types.SimpleNamespace(config=config, data=types.SimpleNamespace(n_classes=10))
    model = types.SimpleNamespace(seed=0, module=None)
    adversarial._attack_seeds(audit, "swiglu-mlp", [model], torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    assert attack_passes(config, n_classes=10) == (spent["grads"], spent["forwards"])
    assert spent["forwards"] == cfg.square_queries  # Square's queries: forward passes only


def test_plan_only_prints_the_plan_and_trains_nothing(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "1")  # stacked where it can, untimed: the line below is the machine's otherwise
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, OPT_PLAN, "-p", "no:cacheprovider")
    assert result.ret == 0
    out = result.stdout.str()
    assert "swiglu-audit plan (cpu, 1 worker(s)): about" in out
    # the tiny audit: 2 seeds, trained as one stacked model; 4 poisoned sets (flip, targeted,
    # backdoor, clean-label) per seed; the scan's power panel: the first seed on each trigger kind
    # but the corner patch, whose 3% set is the backdoor's (the tiny audit's panel: the corner patch
    # and the checkerboard); the privacy suite's 2 reference models (quick), one seed each
    for model in ("swiglu-mlp", "relu-mlp"):
        assert (f"{model}: trainings 2 clean x 4 epochs (seeds stacked), 8 poisoning x 4 epochs (seeds stacked), "
                "1 scan power panel x 4 epochs, 2 determinism x 1 epochs, 2 privacy reference x 4 epochs "
                "(0 cached)") in out
    # nothing trained or measured: the only entries are the probes' unit costs, kept for the day
    assert {p.relative_to(tmp_path / "empty-cache").parts[0]
            for p in (tmp_path / "empty-cache").rglob("*.safetensors")} <= {"probes"}
    assert not (tiny_project.path / "reports" / "report.json").exists()


def test_a_plan_over_the_budget_stops_before_training_and_says_what_fits(tiny_project, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "empty-cache"))
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, f"{OPT_MAX_MINUTES}=0.0001", "-p", "no:cacheprovider")
    assert result.ret == 4
    err = result.stderr.str()
    assert "more than max_minutes = 0.0001" in err and "does NOT fit" in err
    assert "no retraining of the mlp models on poisoned data" in err  # the tiny audit poisons only the MLPs
    assert "no retraining of the user models" not in err  # no user model here: dropping it would cut nothing
    assert "scan_steps = 50 (a weaker trigger scan" in err
    assert "threat_triggers = ['corner_patch'] (the scan's power measured on one trigger kind" in err
    assert "Traceback" not in err
    assert {p.relative_to(tmp_path / "empty-cache").parts[0]
            for p in (tmp_path / "empty-cache").rglob("*.safetensors")} <= {"probes"}


def test_given_unit_costs_make_the_plan_reproducible_and_bad_ones_are_named(monkeypatch, tmp_path):
    """In-process, through what the plugin calls before training (the plan printed through pytest
    is the test above's)."""
    from swiglu_audit.errors import ConfigError
    from swiglu_audit.planning.plan import PROBE_ENV, make_plan, plan_lines
    from swiglu_audit.session import AuditSession

    monkeypatch.setenv(PROBE_ENV, "0.01,0.002")
    config = build_config(profile="quick", cache_dir=str(tmp_path / "cache"))
    first = "\n".join(plan_lines(make_plan(AuditSession(config), 1), 0))
    again = "\n".join(plan_lines(make_plan(AuditSession(config), 1), 0))
    assert "10.0 ms/step, 2.0 ms/gradient pass" in first
    assert "trigger scan" in first  # the estimate by part of the work
    assert _estimates(first) == _estimates(again)
    monkeypatch.setenv(PROBE_ENV, "fast")
    with pytest.raises(ConfigError, match="SWIGLU_AUDIT_PROBE_SECONDS='fast': give two or three numbers"):
        make_plan(AuditSession(config), 1)


@pytest.mark.parametrize("bad", ["-1", "\"ten\"", "true"])
def test_max_minutes_must_be_a_number_of_minutes(bad):
    import tomllib

    from swiglu_audit.errors import ConfigError

    with pytest.raises(ConfigError, match="max_minutes"):
        build_config(tomllib.loads(f"max_minutes = {bad}"))


def test_every_report_records_its_plan_beside_the_time_taken(tiny_audit_report):
    plan = tiny_audit_report["plan"]
    assert plan["estimated_seconds"] > 0 and plan["actual_seconds"] > 0
    assert {m["name"] for m in plan["models"]} == {"swiglu-mlp", "relu-mlp"}
    assert all(m["trainings"]["clean"] == 2 and m["trainings"]["poisoning"] == 8 for m in plan["models"])


def _estimates(text: str) -> list[float]:
    """Seconds of every "about N s" / "about N min" in a plan message, in order."""
    import re

    return [float(v) * (60 if unit == "min" else 1) for v, unit in re.findall(r"about ([\d.]+) (s|min)\b", text)]


def test_an_accepted_reduced_plan_runs_the_cut_audit_and_reports_the_cut(tiny_project, tmp_path, monkeypatch):
    # many poisoned sets: dropping the MLPs' poisoned retraining cuts the plan tenfold, so the
    # budget below sits far from both estimates whatever the machine's load does to the probe
    many_sets = ("clean_label = true\nflip_rates = [0.05, 0.1, 0.2, 0.3]\ntargeted_rates = [0.2, 0.4]\n"
                 "backdoor_rates = [0.03, 0.05, 0.1]\ndetection_rate = 0.05\n")
    # (no membership inference: its reference models would be a cost no poisoning cut touches)
    tiny_project.makefile(".toml", pyproject=TINY_AUDIT_TOML.replace("clean_label = true", many_sets, 1)
                          + '\n[tool.swiglu_audit.privacy]\nfamilies = ["user"]\n')
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE", str(tmp_path / "empty-cache"))
    # the same unit costs in both runs; a trigger-scan step too cheap for a shorter scan to fit
    monkeypatch.setenv("SWIGLU_AUDIT_PROBE_SECONDS", "0.004,0.001,0.000001")
    three_seeds = ("--swiglu-audit-seeds=0,1,2", "-p", "no:cacheprovider")
    over = tiny_project.runpytest_subprocess(OPT_ENABLE, f"{OPT_MAX_MINUTES}=0.0001", *three_seeds)
    assert over.ret == 4
    message = over.stderr.str().split("Settings that cut it", 1)[1]
    full = _estimates(over.stderr.str())[0]
    cheapest = min(_estimates(message))
    assert cheapest < full / 5  # two seeds and no poisoned retraining: a large cut
    budget = (full * cheapest) ** 0.5 / 60  # between the two: only a cut that drops poisoning fits
    # under xdist: the workers get the cut through their workerinput, or they would audit the full plan
    result = tiny_project.runpytest_subprocess(OPT_ENABLE, f"{OPT_MAX_MINUTES}={budget:.6f}",
                                               "--swiglu-audit-accept-reduced-plan", "-n", "2", *three_seeds)
    assert result.ret in (0, 1), result.stderr.str()
    assert "reduced to fit max_minutes" in result.stderr.str()
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    assert doc["plan"]["cuts"] and doc["plan"]["estimated_seconds"] <= budget * 60
    # the job graph in the report is the cut audit's (its work over the two workers fits too)
    assert doc["plan"]["jobs"]["estimated_seconds"] / 2 <= budget * 60
    assert "no retraining of the mlp models on poisoned data" in doc["plan"]["cuts"][0]
    assert doc["config"]["poisoning"]["families"] == ["user"] and doc["config"]["max_minutes"] == pytest.approx(budget, rel=1e-4)
    assert not [f for f in doc["findings"] if f["suite"] == "poisoning" and f["check"] == "backdoor_attack_success"]
    cut_rows = [c for c in doc["coverage"] if c["area"].startswith("Cut to fit max_minutes")]
    assert cut_rows and not any(c["measured"] for c in cut_rows)


def test_reference_models_are_counted_at_the_size_of_their_own_training_set():
    from swiglu_audit.training.planned import Trainings

    # digits: 1,078 training records; a reference model trains on half of all 1,797
    reference = Trainings(["privacy-reference0"], 30, (1000,), paired=True, examples=1797 // 2)
    assert reference.steps_per_epoch(1078, 64) == 15
    assert Trainings(["clean"], 30, (0, 1)).steps_per_epoch(1078, 64) == 17
    assert reference.pairs() == [("privacy-reference0", 1000)]


def test_the_probe_is_timed_once_a_day_and_an_unsigned_one_is_not_trusted(monkeypatch, tmp_path):
    """A warm audit re-plans from the day's probe; with SWIGLU_AUDIT_CACHE_KEY set, an entry that
    is not signed with it (it would decide max_minutes and the cut) is timed again."""
    from swiglu_audit.planning import plan as plan_module
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv(plan_module.PROBE_ENV, raising=False)
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    timed = []
    real = plan_module.probe
    monkeypatch.setattr(plan_module, "probe", lambda *args: timed.append(args[1]) or real(*args))
    config = build_config(profile="quick", cache_dir=str(tmp_path / "cache"))
    first = plan_module.make_plan(AuditSession(config), 1)
    models = len(first.models)
    assert len(timed) == models
    again = plan_module.make_plan(AuditSession(config), 1)
    assert len(timed) == models  # nothing timed the second time
    assert plan_module.reused_probes(again) == plan_module.reused_probes(first)
    monkeypatch.setenv("SWIGLU_AUDIT_CACHE_KEY", "a secret the first run did not have")
    with pytest.warns(Warning, match="untrusted"):
        plan_module.make_plan(AuditSession(config), 1)
    assert len(timed) == 2 * models


def test_a_new_suite_declares_its_own_work_and_the_plan_prices_it_without_planning_code(monkeypatch, tmp_path):
    """A suite added to the catalogue with its `work`, `units` and `cuts`: the plan, the job graph
    and the budget's options take it in, and nothing in planning/ names it."""
    import sys
    import types

    from swiglu_audit.checks import suite_catalog
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.planning.plan import PROBE_ENV, budget_options, make_plan
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training.planned import Trainings, Unit, Work
    from swiglu_audit.training.train import validation_passes

    module = types.ModuleType("swiglu_audit.measure.watermark")
    module.prefetch = lambda audit, name: None
    module.planned_work = lambda audit, name: Work(
        trainings={"watermark fine-tune": Trainings(["watermarked"], 3, (0,))},
        attack_gradient_passes=10, forward_examples=3000, units={"watermark probe": 7})
    module.probe_units = lambda audit, name, model: [Unit("watermark probe", lambda: None, gradient_passes=4.0)]
    module.budget_cuts = lambda audit: [("[tool.swiglu_audit.training] epochs = 2 (a shorter watermark)",
                                         {"training": {"epochs": 2}})]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(suite_catalog.SUITES, "watermark", suite_catalog.SuiteInfo(
        "watermark", "Watermark robustness", prefetch="watermark:prefetch", work="watermark:planned_work",
        units="watermark:probe_units", cuts="watermark:budget_cuts"))
    monkeypatch.setenv(PROBE_ENV, "0.004,0.002,0.01")  # given unit costs: the arithmetic is exact
    config = build_config({"variants": ["swiglu", "relu"], "families": ["mlp"], "seeds": [0, 1, 2],
                           "cache_dir": str(tmp_path / "cache")}, profile="quick")
    audit = AuditSession(config)
    plan = make_plan(audit, 1)
    model = plan.models[0]
    data = audit.data
    steps = -(-len(data.y_train) // config.training.batch_size)
    forward = 3000 + validation_passes(3, steps) * len(data.y_val)
    expected = (3 * steps * 0.004  # the training
                + 10 * 0.002  # the attack passes
                + forward / 3 * 0.002 / config.adversarial.n_examples  # forward passes by the example
                + 7 * 0.01)  # its own unit, at the given unit cost
    assert model.seconds_by_job()["watermark"] == pytest.approx(expected)
    assert model.trainings["watermark fine-tune"] == 1 and model.units["watermark probe"] == 7
    assert sum(model.seconds_by_job().values()) == pytest.approx(model.seconds)
    graph = audit_graph(audit, plan.to_dict())
    job = graph.jobs[f"watermark:{model.name}"]
    assert job.seconds == pytest.approx(expected, abs=0.01) and job.deps == (f"training:{model.name}",)
    labels = [o.label for o in budget_options(audit, plan, 1)]
    assert "[tool.swiglu_audit.training] epochs = 2 (a shorter watermark)" in labels
    # the planning code names no suite
    import swiglu_audit.planning.plan as plan_module

    source = Path(plan_module.__file__).read_text()
    assert not [s for s in suite_catalog.SUITES if f'"{s}"' in source or f"measure.{s}" in source]


def test_a_suites_parts_are_shares_of_its_declared_work_and_a_wrong_share_is_refused(tmp_path):
    """The parts of the adversarial and poisoning jobs together with the rest of each job are the
    suite's declared work, exactly; `minus` refuses a share its suite does not hold."""
    from swiglu_audit.measure import adversarial, poisoning
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training.planned import Trainings, Work, minus, total

    audit = AuditSession(build_config({"variants": ["swiglu", "relu"], "families": ["mlp"], "seeds": [0, 1, 2],
                                       "cache_dir": str(tmp_path / "cache")}, profile="quick"))
    name = "swiglu-mlp"
    for suite in (adversarial, poisoning):
        whole, parts = suite.planned_work(audit, name), suite.planned_parts(audit, name)
        assert parts and len({p.name for p in parts}) == len(parts)
        rebuilt = total([*(p.work for p in parts), minus(whole, [p.work for p in parts])])
        assert {k: sorted(v.tags) for k, v in rebuilt.trainings.items()} == {k: sorted(v.tags) for k, v in whole.trainings.items()}
        for field in ("attack_gradient_passes", "attack_forward_passes", "forward_examples", "gradient_examples"):
            assert getattr(rebuilt, field) == getattr(whole, field), (suite.__name__, field)
        assert rebuilt.units == whole.units
    # the seeds attacked as one stacked attack where the model stacks, else side by side
    audit.zoo.follow_choice(name, True)
    assert [p.name for p in adversarial.planned_parts(audit, name)] == ["seeds"]
    audit.zoo.follow_choice(name, False)
    assert [p.name for p in adversarial.planned_parts(audit, name)] == ["seed-0", "seed-1", "seed-2"]
    # every poisoned set and each panel kind that is not one of them
    names = [p.name for p in poisoning.planned_parts(audit, name)]
    assert sum(n.startswith("panel-") for n in names) == len(audit.config.poisoning.threat_triggers) - 1
    whole = Work(trainings={"poisoning": Trainings(["a", "b"], 3, (0, 1))}, forward_examples=10, units={"scan": 4})
    share = Work(trainings={"poisoning": Trainings(["a"], 3, (0, 1))}, forward_examples=4, units={"scan": 1})
    rest = minus(whole, [share])
    assert rest.trainings["poisoning"].tags == ["b"] and rest.forward_examples == 6 and rest.units == {"scan": 3}
    with pytest.raises(ValueError, match="does not hold"):
        minus(whole, [Work(trainings={"poisoning": Trainings(["c"], 3, (0,))})])
    with pytest.raises(ValueError, match="more work"):
        minus(whole, [Work(forward_examples=11)])


def test_a_pretrained_model_is_planned_at_one_seed(tmp_path):
    """A model loaded from weights is measured once (it has no seeds): its attacks, OOD and
    deployment passes are counted once, and it is not trained."""
    from safetensors.torch import save_file
    from torch import nn

    from swiglu_audit.measure import adversarial, deployment, ood
    from swiglu_audit.session import AuditSession

    (tmp_path / "pretrained_models.py").write_text(
        "from torch import nn\n\ndef small(n_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_classes))\n")
    save_file(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).state_dict(), str(tmp_path / "small.safetensors"))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        config = build_config({"profile": "quick", "seeds": [0, 1, 2], "include_builtin_zoo": False,
                               "cache_dir": str(tmp_path / "cache"),
                               "models": [{"name": "mine", "factory": "pretrained_models:small",
                                           "weights": "small.safetensors", "role": "candidate"},
                                          {"name": "theirs", "factory": "pretrained_models:small", "role": "baseline"}]},
                              project_root=tmp_path)
        audit = AuditSession(config)
        assert audit.zoo.trained_seeds("mine") == (None,) and audit.zoo.trained_seeds("theirs") == (0, 1, 2)
        assert not audit.zoo.planned_work("mine").trainings
        for suite in (adversarial, ood, deployment):
            once, thrice = suite.planned_work(audit, "mine"), suite.planned_work(audit, "theirs")
            assert (once.attack_gradient_passes * 3, once.forward_examples * 3) == (
                thrice.attack_gradient_passes, thrice.forward_examples), suite.__name__
        assert [p.name for p in adversarial.planned_parts(audit, "mine")] == ["seed-pretrained"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pretrained_models", None)


def test_under_xdist_a_child_process_times_the_models_and_the_plan_reads_its_costs(monkeypatch, tmp_path):
    """The controller of an xdist run waits for its workers: the probes (and the memory they leave)
    run in a child process, whose unit costs the plan takes as they are (and the cache keeps for
    the day); where the child fails, the plan times the models itself and says why."""
    from swiglu_audit.planning import plan as plan_module
    from swiglu_audit.planning import probe_apart as apart
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv(plan_module.PROBE_ENV, raising=False)
    monkeypatch.delenv("SWIGLU_AUDIT_CACHE_KEY", raising=False)
    settings = {"variants": ["swiglu", "relu"], "families": ["mlp"]}
    audit = AuditSession(build_config(settings, profile="quick", cache_dir=str(tmp_path / "cache")))
    real_popen, children = apart.subprocess.Popen, []
    monkeypatch.setattr(apart.subprocess, "Popen", lambda *a, **k: children.append(a) or real_popen(*a, **k))
    costs, note = apart.probe_apart(audit, 2)
    assert note is None and set(costs) == set(audit.zoo.specs)
    assert len(children) == min(2, os.cpu_count() or 1)  # one child per worker, each timing its share side by side
    assert all(c.step > 0 and c.gradient > 0 and c.units["trigger scan"] > 0 for c in costs.values())
    monkeypatch.setattr(apart.subprocess, "Popen", lambda *a, **k: pytest.fail("a second child started"))
    monkeypatch.setattr(plan_module, "probe", lambda *args: pytest.fail("timed again in this process"))
    assert plan_module.reused_probes(plan_module.make_plan(audit, 2, costs)) == costs
    assert apart.probe_apart(audit, 2) == ({}, None)  # kept for the day: no child, no probe here
    assert plan_module.reused_probes(plan_module.make_plan(audit, 2)) == costs

    other = AuditSession(build_config(settings, profile="quick", cache_dir=str(tmp_path / "other")))
    class Broken:  # a child that fails at once, saying why on its stderr
        returncode, pid = 1, -1

        def __init__(self, *args, stderr, **kwargs):
            stderr.write(b"it broke")

        def wait(self, timeout=None):
            return 1

        poll = wait
    monkeypatch.setattr(apart.subprocess, "Popen", Broken)
    costs, note = apart.probe_apart(other, 2)
    assert costs == {} and note.count("failed: it broke") == len(children)
    assert all(name in note for name in other.zoo.specs)  # each failure names the models it left
    monkeypatch.setattr(apart.subprocess, "Popen", real_popen)
    monkeypatch.setattr(apart.tempfile, "TemporaryDirectory", lambda **k: (_ for _ in ()).throw(OSError("no room")))
    assert apart.probe_apart(other, 2) == ({}, "OSError: no room")  # never raises: the plan times them here


def test_a_probe_times_only_the_units_its_model_runs(monkeypatch, tmp_path):
    """A ViT outside the poisoning suite's families runs no trigger scan: its probe does not time
    one (that took 5.7 s of a ViT's 6.4 s probe), and a setting that poisons it times afresh."""
    from swiglu_audit.planning import plan as plan_module
    from swiglu_audit.session import AuditSession

    monkeypatch.delenv(plan_module.PROBE_ENV, raising=False)
    settings = {"variants": ["swiglu", "relu"], "families": ["mlp", "vit"]}
    audit = AuditSession(build_config({**settings, "poisoning": {"families": ["mlp"]}}, profile="quick",
                                      cache_dir=str(tmp_path / "cache")))
    vit = audit.zoo.instantiate(audit.zoo.spec("swiglu-vit"))
    assert plan_module.declared_units(audit, "swiglu-vit", vit) == []
    assert plan_module.probe(audit, "swiglu-vit").units == {}
    assert list(plan_module.probe(audit, "swiglu-mlp").units) == ["trigger scan"]
    poisoned = AuditSession(build_config({**settings, "poisoning": {"families": ["mlp", "vit"]}}, profile="quick",
                                         cache_dir=str(tmp_path / "cache")))
    assert [u.name for u in plan_module.declared_units(poisoned, "swiglu-vit", vit)] == ["trigger scan"]
    assert plan_module.probe_key(poisoned, "swiglu-vit", 1) != plan_module.probe_key(audit, "swiglu-vit", 1)
