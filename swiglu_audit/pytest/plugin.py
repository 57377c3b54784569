"""pytest hooks only: options, the suites, findings gathered across xdist workers, the summary and
the reports. The logic lives in plain modules (config, session, report, relay).

Findings travel from the test that records them to the process that writes the reports as JSON
strings in `item.user_properties`: pytest-xdist ships those to the controller, and --junitxml writes
them as <property> elements. Only the controller (never a worker) writes report files.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import pytest

from .. import config as cfg
from ..training.progress import ProgressBoard
from ..util.memory import release_freed_memory
from .relay import (
    CHECK_MARKER,
    COLLECTOR_KEY,
    CONFIG_KEY,
    CORES_SHARED_BY_KEY,
    DATA_KEY,
    DESELECTED_KEY,
    DOCUMENT_KEY,
    REPORT_PATHS_KEY,
    SHARD_DESELECTED_KEY,
    SHARD_KEY,
    WORKERINPUT_PROGRESS_DIR,
    WORKERINPUT_REDUCED_PLAN,
    WORKEROUTPUT_DESELECTED,
    WORKEROUTPUT_SHARD_DESELECTED,
    FindingCollector,
    data_settings,
    is_xdist_worker,
)

BOARD_KEY = pytest.StashKey[ProgressBoard]()
FINGERPRINT_KEY = pytest.StashKey[str]()  # what this audit's results depend on (warm.audit_fingerprint)
REDUCED_PLAN_KEY = pytest.StashKey[dict]()  # the controller's cut of the plan, for its workers
FROZEN_KEY = pytest.StashKey[bool]()  # this audit froze the collected heap (gc.freeze): undone at its end

SUITE_FILE_PREFIX = "suite_"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("swiglu-audit", "SwiGLU robustness and security audit")
    group.addoption(cfg.OPT_ENABLE, action="store_true", default=False,
                    help="run the audit suites (train or load the zoo, attack, write reports)")
    group.addoption(cfg.OPT_PROFILE, choices=cfg.PROFILES, default=None,
                    help="quick (seconds), standard (default) or full (for a GPU)")
    group.addoption(cfg.OPT_DEVICE, choices=cfg.DEVICES, default=None,
                    help="device for training and attacks; auto picks CUDA, then MPS, then CPU")
    group.addoption(cfg.OPT_REPORT_DIR, default=None, metavar="DIR",
                    help="folder for report.json, report.html and the other reports")
    group.addoption(cfg.OPT_CACHE_DIR, default=None, metavar="DIR",
                    help="checkpoint cache folder, or an object store's URL shared by every worker and audit "
                         "(s3://bucket/prefix, gs://...; default: $SWIGLU_AUDIT_CACHE or ~/.cache/swiglu-audit)")
    group.addoption(cfg.OPT_SEEDS, default=None, metavar="0,1,2",
                    help="training seeds, comma-separated (overrides the profile)")
    group.addoption(cfg.OPT_UPDATE_GOLDEN, action="store_true", default=False,
                    help="regenerate the golden output files instead of comparing with them")
    group.addoption(cfg.OPT_SAVE, action="store_true", default=False,
                    help="save this audit to the history folder (history_dir, default .swiglu-audit-history)")
    group.addoption(cfg.OPT_COMPARE, default=None, metavar="accepted|last|RUN|PATH",
                    help="compare with a saved audit (accepted: the last that passed its gates or that a "
                         "person accepted) or a report.json, and fail (exit 1) on a regression: any "
                         "significant worsening, loosened by [tool.swiglu_audit.gates]")
    group.addoption(cfg.OPT_SHARD, default=None, metavar="K/N",
                    help="run shard K of N of the audit's checks (deterministic by check id); merge the "
                         "shards' report.json files with `swiglu-audit merge`")
    group.addoption(cfg.OPT_PLAN, action="store_true", default=False,
                    help="print what the audit would train and attack, what is cached, and an estimate of "
                         "the time (from a short timed probe of each model), then exit 0 without training")
    group.addoption(cfg.OPT_LIVE, default=None, metavar="PATH|MODULE:CALLABLE",
                    help="production inputs for the drift suite: an .npz (x_live, optional y_live) or .npy "
                         "file, or a callable returning them; overrides [tool.swiglu_audit] live")
    group.addoption(cfg.OPT_MAX_MINUTES, type=float, default=None, metavar="MINUTES",
                    help="time budget (setting max_minutes): when the plan's estimate exceeds it, stop "
                         "before training with a usage error (exit 4) that says what would fit")
    group.addoption(cfg.OPT_ACCEPT_REDUCED, action="store_true", default=False,
                    help="when the plan exceeds max_minutes, apply the first reduction that fits (fewer "
                         "seeds, fewer families retrained on poisoned data) and record it in the report")
    group.addoption(cfg.OPT_EXECUTOR, choices=("local", "ray"), default="local",
                    help="where the audit's jobs (trainings, each suite's measurements of each model) run: "
                         "local (this process and its xdist workers) or ray (a Ray cluster: RAY_ADDRESS, or a "
                         "local one; give the cluster a shared cache folder); the checks then judge their results")
    group.addoption(cfg.OPT_DEBUG, action="store_true", default=False,
                    help="show the traceback behind each setup problem (as -v does)")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption(cfg.OPT_ENABLE))


@functools.cache
def suites_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("swiglu_audit.suites")))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CHECK_MARKER}(info): a swiglu-audit check (CheckInfo)")
    if not _enabled(config):
        return
    if config.getoption(cfg.OPT_SHARD):  # a bad K/N stops the run now, not after the preflight and the probes
        from .sharding import parse_shard

        config.stash[SHARD_KEY] = parse_shard(config.getoption(cfg.OPT_SHARD))
    from ..training.batching import memory_cap
    from ..training.device import prepare_cuda_determinism
    from .preflight import check_import_paths, check_report_dir, check_setup, check_shared_cache

    prepare_cuda_determinism()  # before anything creates a cuBLAS handle; xdist workers inherit it
    memory_cap()  # a malformed SWIGLU_AUDIT_DEVICE_MEMORY is a usage error now, not an ERROR per check later

    invocation = config.invocation_params.dir
    project_root = config.inipath.parent if config.inipath else invocation

    def from_cli(option):  # paths typed on the command line are relative to where pytest runs
        value = config.getoption(option)
        if value and cfg.is_url(value):  # the cache on an object store: a URL, not a path
            return value
        value = cfg.local_path(value) if value else value  # file:///x is the folder /x
        return str((invocation / value).resolve()) if value else None

    audit_config = cfg.build_config(
        cfg.read_pyproject_table(project_root),
        profile=config.getoption(cfg.OPT_PROFILE), device=config.getoption(cfg.OPT_DEVICE),
        report_dir=from_cli(cfg.OPT_REPORT_DIR), cache_dir=from_cli(cfg.OPT_CACHE_DIR),
        seeds=config.getoption(cfg.OPT_SEEDS), project_root=project_root,
        update_golden=config.getoption(cfg.OPT_UPDATE_GOLDEN),
        save=config.getoption(cfg.OPT_SAVE), compare_with=config.getoption(cfg.OPT_COMPARE),
        max_minutes=config.getoption(cfg.OPT_MAX_MINUTES), live=config.getoption(cfg.OPT_LIVE),
    )
    config.stash[CONFIG_KEY] = audit_config
    if is_xdist_worker(config):
        check_import_paths(audit_config)  # the controller checked the rest before starting us
        cut = config.workerinput.get(WORKERINPUT_REDUCED_PLAN)  # type: ignore[attr-defined]
        if cut:  # the controller cut the plan to fit max_minutes: the same settings changed here
            config.stash[CONFIG_KEY] = cfg.apply_changes(audit_config, cut)
    else:
        _check_executor(config)
        # Every static problem of the setup, all at once, before anything trains (exit 4).
        data = check_setup(audit_config, show_tracebacks=bool(config.getoption(cfg.OPT_DEBUG))
                           or config.getoption("verbose") > 0)
        config.stash[DATA_KEY] = (data, data_settings(audit_config))
        check_report_dir(audit_config.report_dir)
        check_shared_cache(audit_config)
        collector = FindingCollector()
        collector.model_names = _model_names(audit_config)
        collector.plan = _plan_or_stop(config, audit_config)
        release_freed_memory()  # the controller waits for its workers from here: what planning freed goes back
        config.stash[COLLECTOR_KEY] = collector
        _run_warm_audit_in_this_process(config, audit_config, data, collector.plan)
        _prepare_progress_board(config)

    from . import fixtures

    config.pluginmanager.register(fixtures, "swiglu_audit.pytest.fixtures")
    # Without explicit paths, run the suites (not the project's own tests); with paths, add them.
    suites = str(suites_dir())
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = [suites]
    elif not any(Path(a.split("::")[0]).resolve().is_relative_to(suites) for a in config.args):
        config.args.append(suites)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    # Our own collection rule, so a user's python_files setting cannot hide the suites.
    if (_enabled(parent.config) and file_path.suffix == ".py"
            and file_path.name.startswith(SUITE_FILE_PREFIX) and file_path.parent == suites_dir()):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CONFIG_KEY not in metafunc.config.stash:
        return
    from ..training.specs import comparison_pairs, model_specs

    specs = model_specs(metafunc.config.stash[CONFIG_KEY])
    if "audit_model" in metafunc.fixturenames:
        metafunc.parametrize("audit_model", [s.name for s in specs])
    if "audit_impl" in metafunc.fixturenames:
        from ..measure.numerical import implementation_names

        metafunc.parametrize("audit_impl", implementation_names(metafunc.config.stash[CONFIG_KEY]))
    if "audit_pair" in metafunc.fixturenames:
        pairs = comparison_pairs(specs)
        metafunc.parametrize("audit_pair", pairs, ids=[f"{c}-vs-{b}" for c, b in pairs])


def _model_names(audit_config: cfg.AuditConfig) -> list[str]:
    from ..training.specs import model_specs

    try:
        return [s.name for s in model_specs(audit_config)]
    except Exception:  # noqa: BLE001  # names only label a crashed check's finding; the preflight reports the rest
        return []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    shard = config.stash.get(SHARD_KEY, None) if CONFIG_KEY in config.stash else None
    if not shard:
        return
    from .sharding import split

    keep, drop = split(items, *shard)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        # the shard's own deselections: what else was deselected narrows the run beyond its shard
        suites = suites_dir().resolve()
        config.stash[SHARD_DESELECTED_KEY] = config.stash.get(SHARD_DESELECTED_KEY, 0) + sum(
            1 for item in drop if Path(str(item.path)).resolve().is_relative_to(suites))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is alive once the suites are collected (torch, the data, the loaded modules: over a
    million objects) lives to the end: leaving it out of the garbage collector's full passes saves
    each pass a scan of all of it (about a second of a warm audit). Garbage is collected first, so
    that none is frozen with it, and the freeze is undone when the audit ends (`pytest_unconfigure`):
    a run of pytest inside another process (pytester, a notebook) leaves nothing behind for good."""
    if _enabled(session.config):
        import gc

        gc.collect()
        gc.freeze()
        session.config.stash[FROZEN_KEY] = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if CONFIG_KEY in item.config.stash:
        from .relay import attach_to_item

        attach_to_item(item, call, report)
    return report


def _check_executor(config: pytest.Config) -> None:
    if config.getoption(cfg.OPT_EXECUTOR) != "ray":
        return
    from ..jobs.executors import ray_module

    ray_module()  # installed, or a usage error that says how
    if config.getoption("numprocesses", default=None):
        raise cfg.ConfigError(f"{cfg.OPT_EXECUTOR}=ray runs the audit's jobs on Ray, in parallel; the checks then only "
                              "read their results. Leave out -n (pytest-xdist), or give -n 0.")


def _run_warm_audit_in_this_process(config: pytest.Config, audit_config: cfg.AuditConfig, data, plan: dict) -> None:
    """Under -n N, an audit this cache completed before (same settings, code, data and selection)
    runs in this process: its checks only read and judge, which costs less than starting workers.
    It keeps the workers' share of the CPU threads, so that what is measured per thread count
    (timings, the determinism check) is what -n N measured and cached. Decided after the plan,
    which is priced for the N workers asked for, as without a marker."""
    from .warm import audit_fingerprint, completed_here, run_in_this_process

    config.stash[FINGERPRINT_KEY] = audit_fingerprint(config, audit_config, data, suites_dir())
    workers = config.getoption("numprocesses", default=None)
    if not (isinstance(workers, int) and workers > 1):
        return
    if (config.getoption(cfg.OPT_EXECUTOR) == "local" and not plan.get("cuts")
            and completed_here(audit_config.cache_dir, config.stash[FINGERPRINT_KEY])):
        run_in_this_process(config)
        config.stash[CORES_SHARED_BY_KEY] = workers
        if config.get_verbosity() >= 0:
            (sys.__stderr__ or sys.stderr).write(
                f"swiglu-audit: this cache holds a completed audit of the same settings, code and data; its checks "
                f"run in this process instead of starting {workers} workers\n")
    else:
        del config.stash[DATA_KEY]  # the workers load their own; the controller runs no check


def _plan_or_stop(config: pytest.Config, audit_config: cfg.AuditConfig) -> dict:
    """The plan before any training, for the report; printed and exit 0 with --swiglu-audit-plan;
    over max_minutes, a usage error (exit 4) naming what would fit, or with
    --swiglu-audit-accept-reduced-plan the first setting that fits, applied and recorded as a cut."""
    from ..jobs.audit_jobs import audit_graph
    from ..planning.plan import budget_options, budget_problem, make_plan, plan_lines, reused_probes
    from ..planning.probe_apart import probe_apart
    from ..session import AuditSession

    workers = config.getoption("numprocesses", default=None)
    workers = workers if isinstance(workers, int) and workers > 0 else 1
    audit = AuditSession(audit_config, data=config.stash[DATA_KEY][0])
    # under xdist this process only waits once the workers start: the probes' memory goes with a child
    probes, probe_note = (probe_apart(audit, workers) if workers > 1 and config.getoption(cfg.OPT_EXECUTOR) == "local"
                          else ({}, None))
    plan = make_plan(audit, workers, probes)
    lines = plan_lines(plan, audit_config.max_minutes)
    if config.getoption(cfg.OPT_PLAN):
        stream = sys.__stdout__ or sys.stdout
        stream.write("\n".join(lines + audit_graph(audit, plan.to_dict()).lines()) + "\n")
        stream.flush()
        pytest.exit("swiglu-audit: plan only, nothing was trained", returncode=0)
    budget, cuts = audit_config.max_minutes, []
    if budget > 0 and plan.seconds > budget * 60:
        options = budget_options(audit, plan, workers)
        fitting = [o for o in options if o.seconds <= budget * 60]
        if not (config.getoption(cfg.OPT_ACCEPT_REDUCED) and fitting):
            raise cfg.ConfigError("\n".join(lines + [budget_problem(plan, budget, options)]))
        label, reduced = fitting[0].label, fitting[0].config
        config.stash[CONFIG_KEY] = reduced
        # xdist workers build their configuration again from the settings: they get the cut's
        # changed settings in their workerinput (pytest_configure_node)
        config.stash[REDUCED_PLAN_KEY] = fitting[0].changes
        audit = audit.with_config(reduced)
        plan = make_plan(audit, workers, reused_probes(plan))
        cuts = [label]
        lines = plan_lines(plan, budget) + [f"  reduced to fit max_minutes = {budget:g}: {label}"]
    if config.get_verbosity() >= 0:  # the total (and the budget's verdict or the cut) at the start
        summary = [lines[0]] + ([lines[-1]] if cuts or budget > 0 else [])
        (sys.__stderr__ or sys.stderr).write("\n".join(summary) + f"\n  ({cfg.OPT_PLAN} lists it per model)\n")
    return {**plan.to_dict(), "jobs": audit_graph(audit, plan.to_dict()).to_dict(),
            "executor": config.getoption(cfg.OPT_EXECUTOR),
            "started": time.time(), "max_minutes": budget, "cuts": cuts,
            **({"probed_here_because": probe_note} if probe_note else {})}


def _prepare_progress_board(config: pytest.Config) -> None:
    """Under xdist, a board on the controller shows what every worker is training or attacking
    (their own output is not shown): on a terminal one redrawn line until the first test reports,
    in a log a line every so often; nothing with -q."""
    workers = config.getoption("numprocesses", default=None)
    if not workers or workers == 0 or config.get_verbosity() < 0:
        return
    stream = sys.__stderr__ or sys.stderr
    tty = bool(stream.isatty()) and not os.environ.get("CI")
    config.stash[BOARD_KEY] = ProgressBoard(ProgressBoard.create_folder(), stream, tty)


def pytest_deselected(items: list) -> None:
    """Audit checks left out of this run on purpose (-k, -m, --deselect, --lf, the shard), counted:
    the gates then know the run is a part of the audit (`warm.narrowed_by`)."""
    if not items or not _enabled(items[0].config):
        return
    config, suites = items[0].config, suites_dir().resolve()
    checks = sum(1 for item in items if Path(str(item.path)).resolve().is_relative_to(suites))
    config.stash[DESELECTED_KEY] = config.stash.get(DESELECTED_KEY, 0) + checks


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """An xdist worker's count of deselected checks (each worker collects, and deselects, them all)."""
    output = getattr(node, "workeroutput", None) or {}
    for key, name in ((DESELECTED_KEY, WORKEROUTPUT_DESELECTED), (SHARD_DESELECTED_KEY, WORKEROUTPUT_SHARD_DESELECTED)):
        node.config.stash[key] = max(node.config.stash.get(key, 0), output.get(name, 0))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist's controller-to-worker channel: what a worker cannot rebuild from the settings (the
    plan's cut, the progress board's folder) goes into its workerinput."""
    cut = node.config.stash.get(REDUCED_PLAN_KEY, None)
    if cut is not None:
        node.workerinput[WORKERINPUT_REDUCED_PLAN] = cut
    board = node.config.stash.get(BOARD_KEY, None)
    if board is not None:
        node.workerinput[WORKERINPUT_PROGRESS_DIR] = str(board.folder)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    collector = session.config.stash.get(COLLECTOR_KEY, None)
    if collector is not None:
        session.config.pluginmanager.register(collector, "swiglu_audit.collector")
    board = session.config.stash.get(BOARD_KEY, None)
    if board is not None:
        session.config.pluginmanager.register(board, "swiglu_audit.progress_board")  # it hears test reports
        board.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if is_xdist_worker(session.config) and _enabled(session.config):  # to the controller (pytest_testnodedown)
        session.config.workeroutput[WORKEROUTPUT_DESELECTED] = session.config.stash.get(DESELECTED_KEY, 0)  # type: ignore[attr-defined]
        session.config.workeroutput[WORKEROUTPUT_SHARD_DESELECTED] = session.config.stash.get(SHARD_DESELECTED_KEY, 0)  # type: ignore[attr-defined]
    board = session.config.stash.get(BOARD_KEY, None)
    if board is not None:
        board.stop()
    collector = session.config.stash.get(COLLECTOR_KEY, None)
    if collector is None:
        return
    from ..report.writer import write_reports
    from .warm import narrowed_by

    audit_config = session.config.stash[CONFIG_KEY]
    shard = session.config.stash.get(SHARD_KEY, None)
    paths, document = write_reports(collector, audit_config, int(exitstatus),
                                    narrowed_by(session.config, str(suites_dir())), shard,
                                    narrowed_by(session.config, str(suites_dir()), beyond_shard=True) if shard else "")
    session.config.stash[REPORT_PATHS_KEY] = paths
    session.config.stash[DOCUMENT_KEY] = document
    _mark_completed(session, exitstatus, collector.findings)
    comparison = document.get("comparison") or {}
    # a gate that could not run (its baseline missing or unreadable) has not passed
    breached = document["summary"]["breaches_policy"] or bool(comparison.get("regressions") or comparison.get("error"))
    if breached and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _mark_completed(session: pytest.Session, exitstatus: int, findings: list[dict]) -> None:
    """A whole audit that ran to its end (not stopped by -x or --maxfail, not cut to fit a time
    budget, on the local executor) with no check in ERROR leaves its marker in the cache."""
    config = session.config
    fingerprint = config.stash.get(FINGERPRINT_KEY, None)
    collector = config.stash.get(COLLECTOR_KEY, None)
    ended = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not (
        session.shouldfail or session.shouldstop)
    cut = bool(((collector.plan if collector else None) or {}).get("cuts"))
    if (fingerprint is None or not ended or cut or config.getoption(cfg.OPT_EXECUTOR) != "local" or not findings
            or any(f.get("status") == "ERROR" for f in findings)):
        return
    from .warm import mark_completed

    mark_completed(session.config.stash[CONFIG_KEY].cache_dir, fingerprint, len(findings))


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(FROZEN_KEY, False):
        import gc

        gc.unfreeze()  # the audit's objects are collectable again once the caller drops them
    board = config.stash.get(BOARD_KEY, None)
    if board is not None:
        board.stop()
        board.remove_folder()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    collector = config.stash.get(COLLECTOR_KEY, None)
    if collector is None:
        return
    from ..report.terminal import summary_lines

    terminalreporter.section("swiglu-audit")
    if exitstatus == pytest.ExitCode.USAGE_ERROR:
        terminalreporter.write_line(f"usage error (exit 4): no report written; {config.stash[CONFIG_KEY].report_dir} "
                                    "keeps the last run's reports, and nothing was saved", red=True, bold=True)
        return
    for line, markup in summary_lines(collector.findings, config.stash[CONFIG_KEY],
                                      config.stash.get(REPORT_PATHS_KEY, {}),
                                      (config.stash.get(DOCUMENT_KEY, None) or {}).get("comparison")):
        terminalreporter.write_line(line, **markup)
