"""The plan of the quick and standard audits from given unit costs, as JSON: to show that a change
to the planning code (or to what the suites declare) keeps the estimates, the budget's options and
the job graph, compare two snapshots.

    python bench/plan_snapshot.py --out before.json    # on the old code
    python bench/plan_snapshot.py --out after.json     # on the new code

Nothing is trained or timed: the unit costs are given (SWIGLU_AUDIT_PROBE_SECONDS), and the cache
folder is empty, so every training counts as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

UNIT_COSTS = "0.004,0.002,0.01"  # seconds per training step, per gradient pass, per suite unit


def snapshot(cache: str) -> dict:
    os.environ["SWIGLU_AUDIT_PROBE_SECONDS"] = UNIT_COSTS
    from swiglu_audit.config import build_config
    from swiglu_audit.jobs.audit_jobs import audit_graph
    from swiglu_audit.planning.plan import budget_options, make_plan
    from swiglu_audit.session import AuditSession

    out = {}
    for profile in ("quick", "standard"):
        audit = AuditSession(build_config(profile=profile, cache_dir=cache, device="cpu"))
        plan = make_plan(audit, 2)
        doc = plan.to_dict()
        doc["jobs"] = audit_graph(audit, doc).to_dict()
        options = budget_options(audit, plan, 2)
        doc["options"] = [(getattr(o, "label", None) or o[0], round(getattr(o, "seconds", None) or o[2], 3))
                          for o in options]
        out[profile] = doc
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        doc = snapshot(cache)
    with open(args.out, "w") as fh:
        json.dump({"unit_costs": UNIT_COSTS, **doc}, fh, indent=1, sort_keys=True, default=str)
    for profile in ("quick", "standard"):
        print(profile, doc[profile]["estimated_seconds"], "s;", len(doc[profile]["options"]), "options;",
              doc[profile]["jobs"]["jobs"], "jobs")


if __name__ == "__main__":
    main()
