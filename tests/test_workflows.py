"""The example CI workflows parse, and every command they run is one the README documents, with
options the plugin really has."""

from pathlib import Path

import pytest
import yaml

from swiglu_audit import config as cfg

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
README = (ROOT / "README.md").read_text()
OPTIONS = {v for k, v in vars(cfg).items() if k.startswith("OPT_")}


def _commands(workflow: dict) -> list[str]:
    lines = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            lines += [line.strip() for line in step.get("run", "").splitlines() if line.strip()]
    return lines


def test_there_are_scheduled_pull_request_and_sharded_workflows():
    names = {p.name for p in WORKFLOWS}
    assert {"scheduled-audit.yml", "pull-request-audit.yml", "sharded-audit.yml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_each_workflow_runs_the_readmes_commands(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"] and workflow["permissions"] == {"contents": "read"}
    commands = _commands(workflow)
    assert any("pytest --swiglu-audit" in c or "swiglu-audit merge" in c for c in commands)
    for command in commands:
        plain = command.replace(".venv/bin/", "").replace("python -m ", "")
        if plain.startswith("pip "):
            assert plain.split(" > ")[0] in README.replace(".venv/bin/", "").replace("python -m ", ""), command
        if "pytest --swiglu-audit" in plain:
            for word in plain.split():
                if word.startswith("--swiglu-audit"):
                    option = word.split("=", 1)[0]
                    assert option in OPTIONS, f"{path.name}: {option} is not an option of the plugin"
                    assert option in README, f"{path.name}: {option} is not documented in the README"
        if plain.startswith("swiglu-audit "):
            assert f"swiglu-audit {plain.split()[1]}" in README


def test_pull_requests_never_touch_the_scheduled_audits_cache():
    def cache_keys(name):
        workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
        return [step["with"]["key"] for job in workflow["jobs"].values() for step in job["steps"]
                if step.get("uses", "").startswith("actions/cache")]

    scheduled, pr = cache_keys("scheduled-audit.yml"), cache_keys("pull-request-audit.yml")
    assert scheduled and pr
    assert all(k.startswith("swiglu-audit-scheduled-") for k in scheduled)
    assert all(k.startswith("swiglu-audit-pr-") for k in pr)


def test_the_scheduled_audit_saves_its_cache_and_history_entry_even_when_a_gate_trips():
    """actions/cache saves only when the job succeeds: a night that trips a gate would never be
    saved. Restore before the audit, save after it whatever the outcome, under a key of its own."""
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "scheduled-audit.yml").read_text())["jobs"]["audit"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    assert not [u for u in uses if u.startswith("actions/cache@")]
    restore, save = uses.index("actions/cache/restore@v4"), uses.index("actions/cache/save@v4")
    audit = next(i for i, step in enumerate(steps) if "pytest --swiglu-audit" in step.get("run", ""))
    assert restore < audit < save and steps[save]["if"] == "always()"
    assert steps[restore]["with"]["path"] == steps[save]["with"]["path"]
    key = steps[save]["with"]["key"]
    assert key == steps[restore]["with"]["key"] and "${{ github.run_id }}" in key and "${{ github.run_attempt }}" in key
    assert key.startswith(steps[restore]["with"]["restore-keys"])
    entry = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")
             and s["with"]["name"] == "swiglu-audit-history-entry"]
    assert entry and entry[0]["if"] == "always()"
    collect = next(s for s in steps if s.get("name") == "The history entry this run saved")
    assert collect["if"] == "always()" and entry[0]["with"]["path"].rstrip("/") in collect["run"]
