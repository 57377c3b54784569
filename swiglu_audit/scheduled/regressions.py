"""What changed between two audits, and which changes are regressions: the gates of a scheduled audit.

`compare(old, new, gates)` lines the two reports' findings up by id and says, for each: added,
removed, status changed, value changed. A change is a *regression* when:
- a status gets worse (PASS -> WARN -> FAIL/ERROR), always;
- a value moves the wrong way (the check's condition says which way is better) by more than the
  gate allows, and the excess is significant by a two-run test on the saved intervals: each
  interval's half-width and degrees of freedom give its standard error, and (worsening -
  allowance) / sqrt(se_old^2 + se_new^2) must exceed the t quantile of 1 - (1 - level) / (2 m) at
  the two standard errors' Welch-Satterthwaite degrees of freedom, m the number of findings whose
  value moved (a one-sided test at 2.5% / m, Bonferroni: with cached models m is one or two; after
  a retraining every value moves, and chance must not flag a few per cent of them). Without any
  gate the allowance is 0: a significant move the wrong way is a regression by default. A value
  without an interval (an exact count) is held to the allowance alone;
- a finding of the old run is missing from the new one (a suite skipped or cut, a model left
  out): what was checked before is not checked now, and a scheduled audit must not pass that
  unseen. Wall-clock findings excepted, as below;
- (with an anchor run) the same holds for the cumulative change since the anchor, so small steps
  that each pass the night-to-night gate add up and trip it;
- (with past runs) a finding's values over them and this run show a steady decline: a
  Mann-Kendall trend test (Kendall's tau against the run order, one-sided in the worse direction,
  at alpha split over the findings tested, Bonferroni) and a decline over the window (Theil-Sen)
  larger than the gate's allowance and the finding's own standard error. Mann-Kendall because it
  assumes neither a straight line nor normal errors, and a handful of nightly values is all there is.
Gates come from `[tool.swiglu_audit.gates]`: `check name = "0.02"` or `"5%"`, and `default`;
they loosen (or, at 0, keep) the default. Findings marked indicative (`details.indicative`:
wall-clock timings, which move with the machine's load) are listed when they change but never
gate: a scheduled audit must not fail on a busy runner. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

from ..verdicts.risk import STATUS_ORDER


@dataclass(frozen=True)
class Gate:
    """An allowed regression: `amount` in the value's own units, or a share of the old value."""

    amount: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str | float, where: str) -> Gate:
        raw = str(text).strip()
        try:
            if isinstance(text, bool):  # TOML true is no amount, though float(True) is 1.0
                raise ValueError
            gate = cls(float(raw[:-1]) / 100.0, relative=True) if raw.endswith("%") else cls(float(raw))
        except ValueError:
            raise ValueError(f"{where} = {text!r}: give an allowed regression such as \"0.02\" "
                             "(absolute) or \"5%\" (relative)") from None
        # "inf" would let any regression through and "nan" never compares: no gate means them
        if not (math.isfinite(gate.amount) and gate.amount >= 0):
            raise ValueError(f"{where} = {text!r} is not an allowed regression (a finite amount, 0 or more: a "
                             "gate only loosens the default, which is no worsening at all); give one such as "
                             "\"0.02\" (absolute) or \"5%\" (relative)")
        return gate

    def allowance(self, old_value: float) -> float:
        """The worsening this gate lets through, in the value's own units."""
        return self.amount * abs(old_value) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount:.0%}" if self.relative else f"{self.amount:g}"


def parse_gates(table: dict) -> dict[str, Gate]:
    """`[tool.swiglu_audit.gates]` -> {check name or "default": Gate}; ValueError naming what is wrong
    (the plugin's settings and the CLI both parse gates here)."""
    if not isinstance(table, dict):
        raise ValueError(f"[tool.swiglu_audit.gates] must be a table of check = \"0.02\" or \"5%\"; got {table!r}")
    return {str(k): Gate.parse(v, f"[tool.swiglu_audit.gates] {k}") for k, v in table.items()}



@dataclass
class Change:
    id: str
    kind: str  # "added" | "removed" | "status" | "value" | "same"
    old_status: str | None
    new_status: str | None
    old_value: float | None
    new_value: float | None
    old_ci: tuple[float, float] | None
    new_ci: tuple[float, float] | None
    regression: bool = False
    why: str = ""  # for a regression: the gate it tripped and the numbers

    @property
    def delta(self) -> float | None:
        if self.old_value is None or self.new_value is None:
            return None
        return self.new_value - self.old_value


@dataclass
class Comparison:
    changes: list[Change]
    environment_differences: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    def to_dict(self) -> dict:
        return {"regressions": len(self.regressions), "environment_differences": self.environment_differences,
                "changes": [asdict(c) for c in self.changes if c.kind != "same"]}


def _ci(f: dict) -> tuple[float, float] | None:
    return None if f.get("ci_low") is None or f.get("ci_high") is None else (f["ci_low"], f["ci_high"])


def _indicative(f: dict | None) -> bool:
    return bool(f and (f.get("details") or {}).get("indicative"))


def _better(f: dict) -> str | None:
    return (f.get("details") or {}).get("better")


def _se(f: dict) -> float | None:
    """A finding's standard error: `_spread`'s, without its degrees of freedom."""
    spread = _spread(f)
    return None if spread is None else spread[0]


def _spread(f: dict) -> tuple[float, float] | None:
    """(standard error, degrees of freedom) of a finding, from its saved interval's half-width and
    level: with the t quantile of the interval's degrees of freedom where the finding saved them
    (a t-interval at 2 seeds is several standard errors wide, and read with the normal quantile
    it would pass for a far noisier value), else the normal one (df infinite)."""
    ci, level = _ci(f), f.get("ci_level") or 0.95
    if ci is None:
        return None
    details = f.get("details") or {}
    df = (details.get("comparison") or {}).get("df") or (details.get("judged") or {}).get("df")
    se = (details.get("judged") or {}).get("se")
    if se is not None and df and math.isfinite(df):  # an interval wider than its t-interval (a 0/1 mean's reach)
        return float(se), float(df)
    if df and math.isfinite(df):
        from scipy.stats import t as t_dist

        return (ci[1] - ci[0]) / 2 / float(t_dist.ppf((1 + level) / 2, df)), float(df)
    return (ci[1] - ci[0]) / 2 / NormalDist().inv_cdf((1 + level) / 2), math.inf


def _welch_critical(old: tuple[float, float], new: tuple[float, float], level: float) -> float:
    """The two-run test's critical value: the t quantile at the Welch-Satterthwaite degrees of
    freedom of the two standard errors (each run's interval rests on few seeds, so the normal
    quantile would flag a no-change about twice as often as it says)."""
    (se_old, df_old), (se_new, df_new) = old, new
    spread = sum(se ** 4 / df for se, df in ((se_old, df_old), (se_new, df_new)) if se > 0 and math.isfinite(df))
    df = (se_old ** 2 + se_new ** 2) ** 2 / spread if spread > 0 else math.inf
    if not math.isfinite(df):
        return NormalDist().inv_cdf((1 + level) / 2)
    from scipy.stats import t as t_dist

    return float(t_dist.ppf((1 + level) / 2, df))


def _value_regression(old: dict, new: dict, gates: dict[str, Gate], level: float = 0.95) -> str:
    """Why the value change of one finding is a regression, or "" when it is not."""
    better = _better(new) or _better(old)
    if better not in ("higher", "lower") or old["value"] is None or new["value"] is None:
        return ""
    worsening = (old["value"] - new["value"]) if better == "higher" else (new["value"] - old["value"])
    gate = _gate(gates, new)
    excess = worsening - (gate.allowance(old["value"]) if gate else 0.0)
    if worsening <= 0 or excess <= 1e-9 * max(1.0, abs(old["value"])):  # rounding is no regression
        return ""
    spread_old, spread_new = _spread(old), _spread(new)
    if spread_old is not None and spread_new is not None:
        critical = _welch_critical(spread_old, spread_new, level)
        t = excess / max(math.hypot(spread_old[0], spread_new[0]), 1e-12)
        if t <= critical:
            return ""  # within the noise of the two runs
        evidence = (f", t = {t:.2f} > {critical:.2f} on the two runs' intervals ({_fmt_ci(_ci(old))} then "
                    f"{_fmt_ci(_ci(new))}; Welch)")
    else:
        evidence = " (exact values, no interval)"
    gate_name = (new["check"] if new["check"] in gates else "default") if gate else None
    allowed = f"beyond the gate {gate_name} = {gate}" if gate else "with no gate set (any significant worsening)"
    return (f"{new['metric']} got worse ({better} is better) by {worsening:.4g}: {old['value']:.4g} -> "
            f"{new['value']:.4g}, {allowed}{evidence}")


def trend_p_value(values: list[float], better: str, min_runs: int = 5) -> float | None:
    """One-sided Mann-Kendall p-value of a decline over runs (oldest first), or None where no
    test applies (too few runs, constant values, no direction)."""
    if better not in ("higher", "lower") or len(values) < min_runs or len(set(values)) < 2:
        return None
    from scipy.stats import kendalltau

    tau, p_two = kendalltau(range(len(values)), values)
    worse = tau < 0 if better == "higher" else tau > 0
    return float(p_two / 2 if worse else 1 - p_two / 2)  # the null distribution is symmetric


def trend_regression(values: list[float], better: str, alpha: float = 0.05, floor: float = 0.0,
                     tests: int = 1) -> str:
    """Why a steady decline over runs (oldest first) is a regression, or "": Mann-Kendall at
    alpha / `tests` (Bonferroni over the findings tested in one comparison), and a decline over
    the window (Theil-Sen slope times its span) larger than `floor` (the gate's allowance, and the
    findings' own noise), so that a steady change too small to matter is not one."""
    p = trend_p_value(values, better)
    if p is None or not p < alpha / tests:
        return ""
    from scipy.stats import theilslopes

    slope = float(theilslopes(values).slope)
    decline = abs(slope) * (len(values) - 1)
    if decline <= floor:
        return ""
    return (f"a steady decline over the last {len(values)} runs ({_num(values[0])} -> {_num(values[-1])}; "
            f"Mann-Kendall one-sided p = {p:.3g} < {alpha / tests:.3g} (alpha over {tests} trend test(s)); "
            f"decline {decline:.3g} over the window, more than {floor:.3g})")


def _fmt_ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def compare(old_doc: dict, new_doc: dict, gates: dict[str, Gate] | None = None,
            anchor_doc: dict | None = None, past_docs: list[dict] | None = None, partial: str = "") -> Comparison:
    """Regressions of `new_doc` against `old_doc` (see the module docstring); with `anchor_doc`,
    also the cumulative change since the anchor; with `past_docs` (oldest first, saved runs before
    this one), also steady declines over them and this run. `partial`: why the new run checked a
    part of the audit on purpose (checks selected on the command line, a shard): its missing
    findings are listed, not gated (such a run never becomes a baseline by itself)."""
    gates = gates or {}
    level = float((new_doc.get("policy") or {}).get("confidence_level", 0.95))
    alpha = 1 - level
    old = {f["id"]: f for f in old_doc["findings"]}
    new = {f["id"]: f for f in new_doc["findings"]}
    anchor = {f["id"]: f for f in anchor_doc["findings"]} if anchor_doc is not None else {}
    past = [{f["id"]: f for f in d["findings"]} for d in past_docs or []]
    trend_series = _trend_series(past, new)
    # each two-run test at alpha split over the findings whose value moved (Bonferroni): with cached
    # models one or two move and keep the full level; after a retraining every value moves, and
    # without the split chance alone would flag a few per cent of them
    night_level = 1 - alpha / max(1, _moved(old, new))
    anchor_level = 1 - alpha / max(1, _moved(anchor, new))
    changes = []
    for fid in sorted(set(old) | set(new)):
        o, n = old.get(fid), new.get(fid)
        change = Change(fid, "same", o and o["status"], n and n["status"], o and o["value"], n and n["value"],
                        o and _ci(o), n and _ci(n))
        if o is None:
            change.kind = "added"
        elif n is None:
            change.kind = "removed"
            change.regression = not partial
            change.why = f"not gated: {partial}" if partial else _removed_why(o)
        elif o["status"] != n["status"]:
            change.kind = "status"
            if STATUS_ORDER.get(n["status"], 9) < STATUS_ORDER.get(o["status"], 9):
                change.regression = True
                change.why = (f"status got worse: {o['status']} -> {n['status']} (gate: any worse status), "
                              f"{o['metric']} {_num(o['value'])} {_fmt_ci(_ci(o))} -> {_num(n['value'])} "
                              f"{_fmt_ci(_ci(n))}; now: {n['reason']}")
        elif o["value"] != n["value"]:
            change.kind = "value"
        if o is not None and n is not None and not change.regression:
            why = _value_regression(o, n, gates, night_level)
            change.regression, change.why = bool(why), why or change.why
        a = anchor.get(fid) if anchor_doc is not None else None
        if a is not None and n is not None and not change.regression:
            why = _value_regression(a, n, gates, anchor_level)
            if why:
                change.regression, change.why = True, f"cumulative since the anchor run: {why}"
        if n is not None and not change.regression and fid in trend_series:
            why = trend_regression(trend_series[fid], _better(n) or "", alpha, _trend_floor(n, gates), len(trend_series))
            if why:
                change.regression, change.why = True, why
        if change.regression and change.kind == "same":
            change.kind = "value"
        if change.regression and _indicative(n if n is not None else o):
            change.regression, change.why = False, f"indicative (wall-clock), not gated: {change.why}"
        changes.append(change)
    return Comparison(changes, environment_differences(old_doc, new_doc))


def _removed_why(old: dict) -> str:
    return (f"no longer checked: it was {old['status']} in the old run ({old['metric']} {_num(old['value'])}) and "
            "this run has no such finding (a suite skipped or cut to fit the time budget, a model or setting "
            "left out); run the audit whole, or accept this run if it was narrowed on purpose")


def _moved(old: dict, new: dict) -> int:
    """How many findings the two-run test reads: in both runs, with a direction and intervals
    on both sides, not indicative, and with a value that moved."""
    return sum(1 for fid, n in new.items() if (o := old.get(fid)) is not None and not _indicative(n)
               and _better(n) in ("higher", "lower") and _ci(o) and _ci(n) and o.get("value") != n.get("value"))


def _trend_series(past: list[dict], new: dict) -> dict[str, list[float]]:
    """Per finding of this run with a direction: its values over the past runs and this one,
    where a trend test applies (the count of these is the Bonferroni divisor)."""
    out = {}
    for fid, n in new.items():
        if n.get("value") is None or _indicative(n):
            continue
        values = [f["value"] for f in (d.get(fid) for d in past) if f and f.get("value") is not None] + [n["value"]]
        if trend_p_value(values, _better(n) or "") is not None:
            out[fid] = values
    return out


def _trend_floor(f: dict, gates: dict[str, Gate]) -> float:
    """The least decline a trend must add up to: the gate's allowance, and the finding's own
    standard error (a drift within one run's noise is no finding)."""
    gate = _gate(gates, f)
    return max(gate.allowance(f["value"]) if gate else 0.0, _se(f) or 0.0)


def _gate(gates: dict[str, Gate], f: dict) -> Gate | None:
    """The gate of a finding's check, else the default one, else none."""
    return gates.get(f["check"]) or gates.get("default")


def environment_differences(old_doc: dict, new_doc: dict) -> list[str]:
    """What differs between the two runs' setups: versions, device, data, configuration."""
    diffs = []
    old_env, new_env = old_doc.get("environment") or {}, new_doc.get("environment") or {}
    for section in ("versions", "device"):
        a, b = old_env.get(section) or {}, new_env.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and key not in ("torch_threads",):
                diffs.append(f"{section}.{key}: {a.get(key)} -> {b.get(key)}")
    old_data, new_data = (old_env.get("data") or {}).get("sha256"), (new_env.get("data") or {}).get("sha256")
    if old_data != new_data:
        diffs.append("data: the splits' sha256 differ")
    if config_digest(old_doc) != config_digest(new_doc):
        a, b = _comparable_config(old_doc), _comparable_config(new_doc)
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        diffs.append("configuration differs in " + ", ".join(keys))
    return diffs


def _comparable_config(doc: dict) -> dict:
    """The settings that decide what is measured (not where reports go, nor the gates)."""
    return {k: v for k, v in (doc.get("config") or {}).items() if k not in ("report_dir", "update_golden", "gates")}


def config_digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(_comparable_config(doc), sort_keys=True).encode()).hexdigest()[:16]


def render_comparison(result: Comparison, old_name: str, new_name: str) -> list[str]:
    """The comparison as text lines: what a CI log shows."""
    lines = [f"swiglu-audit compare: {old_name} -> {new_name}"]
    if result.environment_differences:
        lines.append("WARN  the runs differ in their setup, so some changes may come from it:")
        lines += [f"        {d}" for d in result.environment_differences]
    changed = [c for c in result.changes if c.kind != "same"]
    for c in sorted(changed, key=lambda c: (not c.regression, c.id)):
        tag = "REGRESSION" if c.regression else c.kind
        if c.kind == "added":
            text = f"added ({c.new_status}, {_num(c.new_value)})"
        elif c.kind == "removed":
            text = f"removed (was {c.old_status}, {_num(c.old_value)})"
        else:
            delta = "" if c.delta is None else f" ({c.delta:+.4g})"
            text = (f"{c.old_status} -> {c.new_status}, {_num(c.old_value)} {_fmt_ci(c.old_ci)} -> "
                    f"{_num(c.new_value)} {_fmt_ci(c.new_ci)}{delta}")
        lines.append(f"{tag:<10}  {c.id}: {text}")
        if c.regression:
            lines.append(f"            {c.why}")
    n = len(result.regressions)
    lines.append(f"{len(changed)} finding(s) changed, {n} regression(s)"
                 + ("" if n else "; no gate tripped"))
    return lines


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"
