"""The measurement layer: one module per suite, each computing (and caching) what its suite's
checks judge, from the session's state (config, data, zoo, cache).

It depends on the session; the session never depends on it. The suites and the fixtures call in.

To add a suite's measurements: write `measure/<suite>.py`, and if some of them are expensive,
give it `prefetch(audit, name)` and name it in the suite's entry of `suite_catalog.py`: under
pytest-xdist each worker then computes its share of the models first, and the job graph gets a
job per model. Declare what that work costs there too (`planned_work`, and `probe_units` and
`budget_cuts` where it has them): the plan prices what the suites declare and restates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..util.memory import release_freed_memory

if TYPE_CHECKING:
    from ..session import AuditSession


def declared(role: str) -> dict[str, Callable]:
    """suite -> the function its catalogue entry names for `role` ("prefetch", "work", "units",
    "cuts"; see `checks.suite_catalog.SuiteInfo`), imported on use (the measurement modules import torch)."""
    import importlib

    from ..checks.suite_catalog import SUITES

    out = {}
    for name, info in SUITES.items():
        target = getattr(info, role)
        if target:
            module, _, function = target.partition(":")
            out[name] = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return out


def prefetchers() -> dict[str, Callable[[AuditSession, str], None]]:
    """suite -> its prefetch function, as the suite catalogue declares it."""
    return declared("prefetch")



def _in_dependency_order(suites: set[str]) -> list[str]:
    """The suites in an order where each comes after those whose results it reads (catalogue
    `after`: deployment after adversarial), by name otherwise."""
    from ..checks.suite_catalog import SUITES

    done: list[str] = []
    pending = sorted(suites)
    while pending:
        ready = [s for s in pending if not set(SUITES[s].after) & (set(pending) - {s})]
        ready = ready or pending[:1]  # (a circle in the catalogue: by name)
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def prefetch_share(audit: AuditSession, needs: dict[str, set[str]], worker_index: int, n_workers: int) -> None:
    """Under pytest-xdist, compute this worker's share of the expensive measurements first.

    `needs` maps each model to the suites whose selected tests name it. Without a prefetch, two
    workers that reach tests of the same model at the same moment would serialise on the cache
    lock: one computes, the other waits. Models are dealt out in turn (the slow vision
    transformers first, so every worker gets its share of them); a worker then finds the other
    workers' results in the cache when its tests need them.
    """
    from ..checks.suite_catalog import SUITES

    # a suite whose prefetch lives in memory only (drift) would be computed and dropped with the
    # model's other results below: its checks compute it when they need it
    by_suite = {suite: run for suite, run in prefetchers().items() if not SUITES[suite].in_memory}
    order = sorted(needs, key=lambda n: (audit.zoo.spec(n).family != "vit", n))
    mine = order[worker_index::n_workers]
    for done, name in enumerate(mine):
        audit.progress.update(f"prefetch {name}", done, len(mine))
        try:
            audit.zoo.models(name)
            for suite in _in_dependency_order(needs[name] & set(by_suite)):
                by_suite[suite](audit, name)
                release_freed_memory(collect=False)  # the suite's working set, before the next suite's
        except Exception:  # noqa: BLE001
            # A broken model must not fail the session fixture (and with it every test on
            # this worker): its own tests hit the same error and report it as ERROR findings.
            continue
        finally:
            # this model's measurements are in the cache: its checks read them from there, as
            # the other workers' do; what they held in memory goes back before the next model's
            audit.forget_results()
            release_freed_memory()
    audit.progress.update("prefetch done, running checks", len(mine), len(mine))
