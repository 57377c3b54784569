"""The job graph and its executors: the graph's arithmetic by hand, the plan that prints it, and
the tiny audit through a local Ray cluster (same findings as the local executor, a worker killed
mid-job retried, two runs of one graph at once training each model once)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swiglu_audit.jobs.graph import Job, JobGraph


def test_the_graph_orders_jobs_after_what_they_wait_for_and_finds_its_critical_path():
    graph = JobGraph([
        Job("attack:b", "b", "adversarial", 5.0, deps=("training:b",)),
        Job("training:a", "a", "training", 10.0),
        Job("training:b", "b", "training", 4.0),
        Job("poison:a", "a", "poisoning", 30.0, deps=("training:a",)),
        Job("attack:a", "a", "adversarial", 2.0, deps=("training:a",)),
    ])
    order = graph.order
    assert order.index("training:b") < order.index("attack:b")
    assert order.index("training:a") < min(order.index("poison:a"), order.index("attack:a"))
    assert graph.critical_path() == (40.0, ["training:a", "poison:a"])
    assert graph.total_seconds() == 51.0
    assert graph.ideal_seconds(1) == 51.0 and graph.ideal_seconds(8) == 40.0  # the chain bounds it
    # a cached job costs nothing: the chain through it shortens
    cached = JobGraph([Job("training:a", "a", "training", 10.0, cached=True),
                       Job("poison:a", "a", "poisoning", 30.0, deps=("training:a",))])
    assert cached.critical_path()[0] == 30.0 and cached.to_dict()["cached"] == 1


def test_a_graph_that_cannot_run_is_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="waits for training:x, which is not in the graph"):
        JobGraph([Job("attack:x", "x", "adversarial", 1.0, deps=("training:x",))])
    with pytest.raises(ValueError, match="in a circle"):
        JobGraph([Job("a", "m", "s", 1.0, deps=("b",)), Job("b", "m", "s", 1.0, deps=("a",))])
    with pytest.raises(ValueError, match="share an id"):
        JobGraph([Job("a", "m", "s", 1.0), Job("a", "m", "s", 2.0)])


def test_the_plan_prints_the_job_graph(tiny_project):
    result = tiny_project.runpytest_subprocess("--swiglu-audit", "--swiglu-audit-plan", "-p", "no:cacheprovider")
    text = result.stdout.str()
    assert result.ret == 0
    # two models: each a training job and one job per measuring suite, waiting for it
    # (the drift suite's outputs stay in memory: no job)
    # parts run on their own first: per model, its seeds' attacks (stacked, as its seeds train),
    # its poisoned trainings (4 sets and the power panel's checkerboard, stacked), then the
    # checkerboard's scan (the corner patch is one of the 4 sets)
    assert ("job graph: 18 jobs (2 training, 2 adversarial parts, 2 adversarial, 2 deployment, 2 ood, "
            "4 poisoning parts, 2 poisoning, 2 privacy") in text
    assert "critical path" in text and "ideal wall time on 1 worker(s)" in text
    # the critical path runs through whichever model the probe timed slower: the two are the same
    # size, so either may; what it must show is a model's trainings before its panel's scan
    assert re.search(r"-> poisoning\[trainings\]:(swiglu|relu)-mlp -> poisoning\[panel-checkerboard\]:\1-mlp ->",
                     text), text


def test_the_jobs_costs_are_the_plans_estimate_less_what_the_checks_do_themselves(monkeypatch, tmp_path):
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.planning.plan import PROBE_ENV, make_plan
    from swiglu_audit.session import AuditSession

    monkeypatch.setenv(PROBE_ENV, "0.004,0.002,0.01")  # given unit costs: nothing is timed
    audit = AuditSession(build_config(profile="quick", cache_dir=str(tmp_path / "cache")))
    plan = make_plan(audit, 1)
    graph = audit_graph(audit, plan.to_dict())
    checks = sum(m.seconds_by_job()["checks"] for m in plan.models)
    assert checks > 0  # the determinism check's trainings at least
    assert graph.total_seconds() + checks == pytest.approx(plan.seconds, abs=0.1)  # (rounded to 0.01 s a job)
    by_suite = {suite: sum(j.seconds for j in graph.jobs.values() if j.suite == suite)
                for suite in ("training", "adversarial", "poisoning", "ood", "privacy", "deployment")}
    assert all(v > 0 for v in by_suite.values()), by_suite
    # the attacks are the adversarial job's alone (its parts: each seed's), the scan the poisoning job's
    assert by_suite["adversarial"] == pytest.approx(sum(m.parts["attacks"] for m in plan.models), abs=0.05)
    seed_parts = [j for j in graph.jobs.values() if j.suite == "adversarial" and j.part]
    assert len(seed_parts) == len(plan.models) * len(audit.config.seeds)
    assert by_suite["poisoning"] > sum(m.parts["trigger scan"] for m in plan.models)
    # the deployment job replays the adversarial job's worst-case examples: it waits for both jobs
    name = plan.models[0].name
    assert graph.jobs[f"deployment:{name}"].deps == (f"training:{name}", f"adversarial:{name}")
    order = graph.order
    assert order.index(f"adversarial:{name}") < order.index(f"deployment:{name}")


def _poisoning_parts(graph, name: str) -> dict:
    return {j.part: j for j in graph.jobs.values() if j.model == name and j.part and j.suite == "poisoning"}


def test_the_poisoning_jobs_parts_follow_the_stacking_the_plans_probe_timed(monkeypatch, tmp_path):
    """Under xdist the probe times the stacking choice in a child, at a worker's threads; the plan
    and its graph follow that choice (nothing is timed again at the controller's threads). Where
    the model stacks, every poisoned training is one part (they stack across sets), and each panel
    kind's check and scan waits for it; where it trains one by one, nothing ties the sets together:
    a part per set, and each panel kind's part trains its own model, all side by side. The same
    work either way, priced the same; the one-by-one graph's chain through the job is shorter."""
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.measure.poisoning import conditions
    from swiglu_audit.planning.plan import PROBE_ENV, UnitCosts, make_plan
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training import zoo_stacking

    monkeypatch.delenv(PROBE_ENV, raising=False)
    monkeypatch.setattr(zoo_stacking, "time_stacking", lambda *a, **k: pytest.fail("timed again"))
    shapes = {}
    for stacks in (True, False):
        audit = AuditSession(build_config(profile="quick", cache_dir=str(tmp_path / str(stacks))))
        probes = {name: UnitCosts(0.004, 0.002, 0.01 if stacks else 0.0, {"trigger scan": 0.001},
                                  "seeds stacked" if stacks else "trains one by one: timed slower", stacks)
                  for name in audit.zoo.specs}
        plan = make_plan(audit, 2, probes)
        graph = audit_graph(audit, plan.to_dict())
        assert all(j.stack is stacks for j in graph.jobs.values())
        assert all(m["stacks"] is stacks for m in plan.to_dict()["models"])
        name = plan.models[0].name
        parts = _poisoning_parts(graph, name)
        whole = sum(v for k, v in plan.models[0].seconds_by_job().items() if k.startswith("poisoning"))
        assert sum(j.seconds for j in parts.values()) + graph.jobs[f"poisoning:{name}"].seconds == pytest.approx(
            whole, abs=0.05)
        assert set(graph.jobs[f"poisoning:{name}"].deps) == {f"training:{name}", *(j.id for j in parts.values())}
        assert all(j.seconds > 0 for j in parts.values()) and "panel-checkerboard" in parts
        shapes[stacks] = (parts, name, audit)
    parts, name, _ = shapes[True]
    trainings = f"poisoning[trainings]:{name}"
    assert not any(p.startswith("trainings-") for p in parts)
    assert all(j.deps == ((f"training:{name}",) if j.id == trainings else (f"training:{name}", trainings))
               for j in parts.values())
    parts, name, audit = shapes[False]
    sets = sorted(p for p in parts if p.startswith("trainings-"))
    assert sets == ["trainings-backdoor-0.03", "trainings-flip-0.2", "trainings-targeted-0.4"]
    assert len(sets) == len(conditions(audit.config.poisoning)) and "trainings" not in parts
    assert all(j.deps == (f"training:{name}",) for j in parts.values())
    assert max(j.seconds for j in parts.values()) < sum(j.seconds for j in parts.values()) / 2


def test_with_unit_costs_given_the_poisoned_trainings_are_priced_and_split_one_by_one(monkeypatch, tmp_path):
    """Unit costs given for another machine say nothing of stacking there: the plan counts the
    trainings one by one, and its graph splits them so (nothing is timed here)."""
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.planning.plan import PROBE_ENV, make_plan
    from swiglu_audit.session import AuditSession
    from swiglu_audit.training import zoo_stacking

    monkeypatch.setenv(PROBE_ENV, "0.004,0.002,0.01")
    monkeypatch.setattr(zoo_stacking, "time_stacking", lambda *a, **k: pytest.fail("timed"))
    audit = AuditSession(build_config(profile="quick", cache_dir=str(tmp_path / "cache")))
    plan = make_plan(audit, 1)
    graph = audit_graph(audit, plan.to_dict())
    assert all(j.stack is False for j in graph.jobs.values()) and not any(m.stacked for m in plan.models)
    assert any(p.startswith("trainings-") for p in _poisoning_parts(graph, plan.models[0].name))


def test_a_worker_trains_as_the_graphs_builder_chose(monkeypatch, tmp_path):
    """A Ray worker may run at other threads, or with another SWIGLU_AUDIT_STACK than the
    controller: the job carries the controller's choice and the worker follows it, stacking
    nothing it was told to train one by one and stacking what it was told to stack (here in the
    driver's process, with the opposite set in its environment each time)."""
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs import audit_jobs
    from swiglu_audit.jobs.graph import Job
    from swiglu_audit.training.zoo_stacking import StackedTrainings

    monkeypatch.setattr(audit_jobs, "_SESSIONS", {})  # this test's sessions go with it
    stacks = []
    original = StackedTrainings._train_one_stack
    monkeypatch.setattr(StackedTrainings, "_train_one_stack",
                        lambda self, spec, chunk, recipe: stacks.append(len(chunk)) or original(self, spec, chunk, recipe))
    for told, environment, expected in ((False, "1", []), (True, "0", [2])):
        monkeypatch.setenv("SWIGLU_AUDIT_STACK", environment)
        config = build_config({"seeds": [0, 1], "variants": ["swiglu", "relu"], "training": {"epochs": 2}},
                              profile="quick", device="cpu", cache_dir=str(tmp_path / f"cache-{told}"))
        job = Job("training:swiglu-mlp", "swiglu-mlp", "training", 0.0, stack=told)
        result = audit_jobs.run_job(config, job, "t")
        assert result["error"] is None and result["trained"] == 2 and stacks == expected
        zoo = audit_jobs._SESSIONS[repr(config)].zoo
        assert "as chosen for this audit" in zoo.stacking_choice(zoo.spec("swiglu-mlp")).why


def test_the_ray_executor_needs_the_device_the_audit_resolved(tmp_path):
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.executors import run_on_ray
    from swiglu_audit.jobs.graph import JobGraph

    with pytest.raises(ValueError, match="resolved device, not 'auto'"):
        run_on_ray(build_config(profile="quick", cache_dir=str(tmp_path)), JobGraph([]))


def test_the_ray_executor_with_xdist_is_a_usage_error(tiny_project):
    pytest.importorskip("ray")
    result = tiny_project.runpytest_subprocess("--swiglu-audit", "--swiglu-audit-executor=ray", "-n", "2",
                                               "-p", "no:cacheprovider")
    assert result.ret == 4
    assert "Leave out -n (pytest-xdist)" in result.stderr.str()


def _findings(report: dict) -> dict[str, tuple]:
    """id -> what must not depend on where the jobs ran: the status and value, except for
    wall-clock timings (indicative), whose presence alone is compared."""
    out = {}
    for f in report["findings"]:
        indicative = bool((f.get("details") or {}).get("indicative"))
        out[f["id"]] = ("timing",) if indicative else (f["status"], f.get("value"))
    return out


def _worker_running_a_job(cache: Path) -> int | None:
    """The pid of a Ray worker process that has started one of the audit's jobs (it notes its pid
    under the cache's jobs/ folder first) and is running it still (Ray titles it while it runs)."""
    for attempts in cache.glob("jobs/*/*.attempts"):
        for pid in attempts.read_text().split():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_job"):
                    return int(pid)
            except OSError:
                continue
    return None


def _stacking_as_in(report: dict) -> str:
    """SWIGLU_AUDIT_STACK for a run that trains as `report`'s did (the tiny audit's fixture stacks,
    untimed). On an empty cache an audit times whether a model's seeds train stacked; a busy
    machine can tip that choice, and a stacked member rounds otherwise than a lone one (two local
    runs, stacked and lone: an OOD AUROC 7e-5 apart, a robust accuracy one input of 60 apart; two
    stacked runs, or two lone ones: identical)."""
    stacks = {m["name"]: m["stacks"] for m in report["plan"]["models"]}
    assert len(set(stacks.values())) == 1, stacks
    return "1" if next(iter(stacks.values())) else "0"


def _same_findings(ours: dict[str, tuple], theirs: dict[str, tuple]) -> bool:
    """The same findings, statuses and values; values within 1e-3 of each other (relative where
    larger than 1): workers that split a matmul across other thread counts round it otherwise."""
    assert ours.keys() == theirs.keys()
    for key, (a, b) in ((k, (ours[k], theirs[k])) for k in ours):
        assert a[0] == b[0], (key, a, b)
        if len(a) > 1 and a[1] != b[1]:
            assert a[1] is not None and b[1] is not None and abs(a[1] - b[1]) <= 1e-3 * max(1.0, abs(b[1])), (key, a, b)
    return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc")
def test_the_tiny_audit_on_ray_matches_the_local_executor_though_a_worker_is_killed_mid_job(
        tiny_audit_report, tmp_path):
    """A local Ray cluster started by the audit (two CPUs), an empty cache, and the first worker
    seen running a job killed with SIGKILL: Ray runs that job again, the audit completes, and
    its findings are the local executor's (timings aside)."""
    pytest.importorskip("ray")
    from conftest import TINY_AUDIT_TOML

    (tmp_path / "pyproject.toml").write_text(TINY_AUDIT_TOML)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "RAY_"))}
    env["SWIGLU_AUDIT_CACHE"] = str(tmp_path / "cache")
    env["SWIGLU_AUDIT_STACK"] = _stacking_as_in(tiny_audit_report)
    # the suites without the poisoning ones (most of the tiny audit's time): the graph still trains,
    # evaluates and attacks every model, so a worker is killed mid-job all the same
    audit = subprocess.Popen([sys.executable, "-m", "pytest", "--swiglu-audit", "--swiglu-audit-executor=ray",
                              "-p", "no:cacheprovider", "-q", "-k", "not poisoning"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(audit.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    killed, deadline = None, time.monotonic() + 300
    while audit.poll() is None and time.monotonic() < deadline:
        if killed is None and (pid := _worker_running_a_job(tmp_path / "cache")) is not None:
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.1)
    if audit.poll() is None:
        audit.kill()
    reader.join(5)
    text = b"".join(output).decode(errors="replace")
    assert killed is not None, "no Ray worker was seen running a job:\n" + text[-3000:]
    assert audit.returncode in (0, 1), text[-3000:]  # the audit ran to its end: a verdict, no error
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert report["summary"]["pytest_exit_status"] == audit.returncode
    ran = report["plan"]["executor_results"]
    assert report["plan"]["executor"] == "ray" and ran["failed"] == {}, text[-3000:]
    assert len(ran["retried"]) == 1  # the killed job, started again in another worker
    # and every job of the selected suites ran to its end (the plan's graph, made before the
    # selection, lists the poisoning suites' jobs too)
    by_suite = report["plan"]["jobs"]["by_suite"]
    assert ran["jobs_run"] == sum(n for suite, n in by_suite.items() if not suite.startswith("poisoning"))
    found, local = _findings(report), _findings(tiny_audit_report)
    assert found and not any(key.startswith("poisoning.") for key in found)
    assert len(found) >= len(local) // 2  # most of the audit: every suite but the two poisoning ones
    assert _same_findings(found, {key: local[key] for key in found})


TWO_AT_ONCE = """
import json, sys, threading, tomllib
from pathlib import Path

import ray

from swiglu_audit.config import build_config
from swiglu_audit.jobs.audit_jobs import audit_graph
from swiglu_audit.jobs.executors import run_on_ray
from swiglu_audit.session import AuditSession

folder = Path(sys.argv[1])
table = tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["swiglu_audit"]
config = build_config({**table, "device": "cpu"}, cache_dir=str(folder / "cache"), project_root=folder)
audit = AuditSession(config)
# one model's training: the two runs' jobs are the same training, at the same time
trainings = lambda: audit_graph(audit, None, {next(iter(audit.zoo.specs)): set()})
graph = trainings()
results = []  # the two runs start (one) Ray instance themselves, on the machine's CPUs
runs = [threading.Thread(target=lambda: results.append(run_on_ray(config, graph))) for _ in range(2)]
for run in runs:
    run.start()
for run in runs:
    run.join(300)
ray.shutdown()
print(json.dumps({"results": results, "seeds": len(config.seeds), "jobs": [j.suite for j in graph.jobs.values()],
                  "cached_after": all(j.cached for j in trainings().jobs.values())}))
"""


def test_two_runs_of_one_graph_at_once_on_one_cache_train_each_model_once(tmp_path):
    """Two executors sending the same training job to one Ray cluster at the same time, over
    one shared cache folder: the cache's lock makes one train the model and the other load it.
    (In a process of its own: Ray and this test process's threads do not mix.)"""
    pytest.importorskip("ray")
    from conftest import TINY_AUDIT_TOML

    (tmp_path / "pyproject.toml").write_text(TINY_AUDIT_TOML)
    (tmp_path / "two_at_once.py").write_text(TWO_AT_ONCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "RAY_"))}
    done = subprocess.run([sys.executable, "two_at_once.py", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["jobs"] == ["training"] and len(out["results"]) == 2
    (first,), (second,) = out["results"]
    assert first["error"] is None and second["error"] is None
    # the two ran at the same time, in two worker processes
    assert first["pid"] != second["pid"] and max(first["started"], second["started"]) < min(first["ended"], second["ended"])
    assert sorted([first["trained"], second["trained"]]) == [0, out["seeds"]]  # one trained, the other loaded
    assert out["cached_after"]


DIVERGING_USER_MODELS = '''
import torch
from torch import nn


class Diverging(nn.Module):
    """Trains for a few steps, then its outputs turn NaN: its training fails for good."""
    def __init__(self, n_classes):
        super().__init__()
        self.linear = nn.Linear(64, n_classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.linear(x.flatten(1))
        return out * float("nan") if self.training and self.calls > 20 else out


def diverging(n_classes):
    return Diverging(n_classes)


def sound(n_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_classes))
'''


def test_on_ray_a_model_whose_training_fails_is_error_findings_and_its_other_jobs_do_not_retrain_it(
        tiny_project, write_pyproject, monkeypatch):
    pytest.importorskip("ray")
    # trained one by one: the poisoning job's trainings are a part per set, each run by a worker
    monkeypatch.setenv("SWIGLU_AUDIT_STACK", "0")
    tiny_project.makepyfile(usermodels=DIVERGING_USER_MODELS)
    write_pyproject(tiny_project, (
        '[[tool.swiglu_audit.models]]\nname = "sound"\nfactory = "usermodels:sound"\nrole = "candidate"\n\n'
        '[[tool.swiglu_audit.models]]\nname = "diverging"\nfactory = "usermodels:diverging"\nrole = "baseline"\n'))
    result = tiny_project.runpytest_subprocess("--swiglu-audit", "--swiglu-audit-executor=ray", "-p", "no:cacheprovider")
    assert result.ret == 1
    doc = json.loads((tiny_project.path / "reports" / "report.json").read_text())
    failed = doc["plan"]["executor_results"]["failed"]
    assert "nan" in failed["training:diverging"]
    # the jobs that wait for it fail with its error, once, without training it again
    others = {k: v for k, v in failed.items() if k != "training:diverging"}
    assert others and all(v.startswith("waits for training:diverging, which failed") for v in others.values())
    assert sum(k.startswith("poisoning[trainings-") for k in others) >= 2  # its sets' parts
    assert not any("sound" in k for k in failed)
    errors = [f for f in doc["findings"] if f["status"] == "ERROR"]
    # every ERROR is the diverging model's training, named, and every one is a finding about the
    # diverging model: the sound model's own findings (its corruption robustness, whose mCE reads
    # the baseline; its training efficiency) lose what needs the other model, not their verdict
    assert errors and all("model 'diverging' could not be trained" in f["reason"] for f in errors)
    assert all("diverging" in f["models"] for f in errors)
    corruption = next(f for f in doc["findings"] if f["id"] == "ood.corruption_robustness[sound]")
    assert corruption["status"] != "ERROR" and "training loss became nan" in corruption["details"]["reference_error"]
    assert any(f["status"] == "PASS" and f["id"].endswith("[sound]") for f in doc["findings"])
