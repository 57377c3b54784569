"""Findings from test items to the controller: attach on the item, harvest from teardown reports.

A test records findings on `item.stash`; at the end of each phase they move to
`item.user_properties` as JSON strings (xdist ships those to the controller; --junitxml writes them
as properties). The controller's FindingCollector reads them from each item's teardown report,
which carries all of the item's properties, so every finding is read exactly once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..config import AuditConfig
from ..report.writer import merged_models

CHECK_MARKER = "swiglu_audit_check"
FINDING_PROPERTY = "swiglu_audit.finding"
STATUS_PROPERTY = "swiglu_audit.status"
META_PROPERTY = "swiglu_audit.meta"

CONFIG_KEY = pytest.StashKey[AuditConfig]()
COLLECTOR_KEY = pytest.StashKey["FindingCollector"]()
REPORT_PATHS_KEY = pytest.StashKey[dict]()
DOCUMENT_KEY = pytest.StashKey[dict]()  # the report document the controller wrote
SESSION_KEY = pytest.StashKey[object]()  # the AuditSession of this process
# The controller's data, loaded once by the setup check, with the settings it was loaded for
# (dataset, live, group feature): its plan and, without workers, its checks reuse it
DATA_KEY = pytest.StashKey[tuple]()
# A warm audit under -n N that runs in the controller (pytest/warm.py): the N its threads are shared by
CORES_SHARED_BY_KEY = pytest.StashKey[int]()
# audit checks left out on purpose (-k, -m, --deselect, --lf, the shard); from each xdist worker
# through its workeroutput, under this name
DESELECTED_KEY = pytest.StashKey[int]()
WORKEROUTPUT_DESELECTED = "swiglu_audit_deselected"
# --swiglu-audit-shard as (index from 0, count), parsed at configure; and how many checks the
# shard itself deselected (the rest of DESELECTED_KEY narrows the run beyond its shard)
SHARD_KEY = pytest.StashKey[tuple]()
SHARD_DESELECTED_KEY = pytest.StashKey[int]()
WORKEROUTPUT_SHARD_DESELECTED = "swiglu_audit_shard_deselected"
ITEM_FINDINGS_KEY = pytest.StashKey[list]()
ITEM_POLICY_FAILURE_KEY = pytest.StashKey[bool]()


def data_settings(config: AuditConfig) -> tuple:
    """The settings that decide the audit's data: data loaded for equal ones is the same data."""
    return (config.dataset, str(config.cache_dir), config.live, config.fairness.group_feature)


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str:
    return str((getattr(config, "workerinput", None) or {}).get("workerid", "main"))


# what the controller hands each xdist worker in `workerinput` (pytest_configure_node)
WORKERINPUT_REDUCED_PLAN = "swiglu_audit_reduced_plan"  # the plan's cut to fit max_minutes
WORKERINPUT_PROGRESS_DIR = "swiglu_audit_progress_dir"  # where the worker publishes its progress


def progress_channel(config: pytest.Config):
    """The file this xdist worker publishes its progress to, for the controller's board; None
    outside xdist or without a board."""
    from pathlib import Path

    workerinput = getattr(config, "workerinput", None) or {}
    folder = workerinput.get(WORKERINPUT_PROGRESS_DIR)
    return Path(folder) / f"{workerinput.get('workerid', 'gw0')}.json" if folder else None


def xdist_workers(config: pytest.Config) -> tuple[int, int]:
    """(this worker's index, the number of workers) from xdist's own channel to its workers
    (`workerinput`): (0, 1) outside pytest-xdist."""
    workerinput = getattr(config, "workerinput", None)
    if not workerinput:
        return 0, 1
    count = int(workerinput.get("workercount", 1) or 1)
    index = int(str(workerinput.get("workerid", "gw0")).lstrip("gw") or 0)
    return (index, count) if count > 1 else (0, 1)


def attach_to_item(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> None:
    marker = item.get_closest_marker(CHECK_MARKER)
    if marker is None:
        return
    findings = item.stash.setdefault(ITEM_FINDINGS_KEY, [])
    failed_here = report.failed and call.excinfo is not None
    if failed_here and report.when in ("setup", "call") and not item.stash.get(ITEM_POLICY_FAILURE_KEY, False):
        # An exception inside a check (or its fixtures) is an ERROR finding, not a crashed audit.
        from ..verdicts.risk import error_finding

        callspec = getattr(item, "callspec", None)
        assert call.excinfo is not None  # failed_here says so
        findings.append(error_finding(marker.args[0], item_models(item), call.excinfo.value,
                                      subject=callspec.id if callspec else item.name).to_dict())
    # The report already holds a copy of item.user_properties: later phases' reports (teardown,
    # which the collector and --junitxml read) copy the item's list, so add to both.
    for finding in findings:
        for target in (item.user_properties, report.user_properties):
            target.append((FINDING_PROPERTY, json.dumps(finding)))
            target.append((STATUS_PROPERTY, finding["status"]))
    findings.clear()
    if report.when == "teardown":
        session: Any = item.config.stash.get(SESSION_KEY, None)
        if session is not None:
            report.user_properties.append((META_PROPERTY, json.dumps({"worker": worker_id(item.config), **session.meta()})))


def item_models(item: pytest.Item) -> list[str]:
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    if "audit_pair" in params:
        return list(params["audit_pair"])
    if "audit_model" in params:
        return [params["audit_model"]]
    return []


class WorkerCrashed(RuntimeError):
    """The xdist worker running a check died (killed, out of memory, a segfault in a kernel)."""


def crashed_check_finding(nodeid: str, message: str, model_names: list[str]) -> dict | None:
    """The ERROR finding of an audit check whose xdist worker crashed while running it (xdist
    reports it with when "???", and no teardown report ever comes): without it the check would
    leave no finding at all. The controller has no item under xdist, so the check is found by
    its node id, in its suite module; None when the id is not an audit check's."""
    import importlib
    import re

    path, _, name = nodeid.partition("::")
    module_name = path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py")
    function, _, params = name.partition("[")
    if not module_name.startswith("suite_") or not function:
        return None
    try:
        target: Any = importlib.import_module(f"swiglu_audit.suites.{module_name}")
        for part in function.split("::"):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    info = next((m.args[0] for m in getattr(target, "pytestmark", []) if m.name == CHECK_MARKER), None)
    if info is None:
        return None
    subject = params.removesuffix("]")
    # the models named in the parameter id (the longest name first: "relu-mlp" is not "mlp")
    models, rest = [], f"-{subject}-"
    for model in sorted(model_names, key=len, reverse=True):
        if re.search(f"-{re.escape(model)}-", rest):
            models.append(model)
            rest = rest.replace(f"-{model}-", "--", 1)
    from ..verdicts.risk import error_finding

    return error_finding(info, sorted(models, key=subject.find), WorkerCrashed(message),
                         subject=subject or function).to_dict()


class FindingCollector:
    """Lives on the controller (or the only process); registered as a plugin for the session."""

    def __init__(self):
        self.findings: list[dict] = []
        self.meta_by_worker: dict[str, dict] = {}
        self.plan: dict | None = None  # the plan made before training (plan.py), for the report
        self.model_names: list[str] = []  # the audit's models: named in a crashed check's finding

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "???" and report.failed:  # xdist's report of a check whose worker crashed
            finding = crashed_check_finding(report.nodeid, str(report.longrepr), self.model_names)
            if finding is not None:
                self.findings.append(finding)
            return
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name == FINDING_PROPERTY:
                self.findings.append(json.loads(str(value)))
            elif name == META_PROPERTY:
                meta = json.loads(str(value))
                self.meta_by_worker[meta.pop("worker")] = meta  # cumulative: the latest wins

    def merged_meta(self) -> dict:
        """One reproducibility block: cache counts summed over workers, model facts united."""
        if not self.meta_by_worker:
            return {}
        metas = list(self.meta_by_worker.values())
        merged = {k: v for k, v in metas[0].items() if k not in ("cache", "models")}
        merged["workers"] = sorted(self.meta_by_worker)
        merged["data"] = next((m["data"] for m in metas if m.get("data")), None)
        counters = ("hits", "misses", "result_hits", "result_misses", "fetched")
        merged["cache"] = {"dir": metas[0]["cache"]["dir"], "url": metas[0]["cache"].get("url"),
                           **{c: sum(m["cache"].get(c, 0) for m in metas) for c in counters},
                           "healed": sorted({k for m in metas for k in m["cache"]["healed"]})}
        merged["models"] = merged_models([m["models"] for m in metas])
        return merged
