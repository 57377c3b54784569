"""oscal-assessment-results.json: the findings as an OSCAL 1.1 assessment-results document.

Each audit finding becomes an OSCAL observation (what was measured), a risk (with likelihood and
impact facets, NIST SP 800-30 scale) when its status is not PASS, and an OSCAL finding whose
target is the RMF subcategory it provides evidence for. UUIDs are derived from the finding ids
(uuid5), so re-rendering the same report gives the same document.
"""

from __future__ import annotations

import json
import uuid

from ..verdicts.risk import level_words

OSCAL_VERSION = "1.1.2"
NAMESPACE = uuid.UUID("6f1f6b35-1c1e-4a8e-9a55-53b1f1e0a7a1")  # swiglu-audit's own namespace
# Our own property namespace. OSCAL wants a URI and its NIST-generated models accept only URLs
# with a host; `.invalid` (RFC 2606) is reserved never to resolve, so this names, never points.
NS = "https://swiglu-audit.invalid/ns/oscal"
FACET_SYSTEM = "https://doi.org/10.6028/NIST.SP.800-30r1"  # likelihood and impact scales


def _line(text) -> str:
    """One line with no outer white space: what OSCAL's prop values (`^\\S(.*\\S)?$`) and
    titles (markup-line) accept, whatever a user named a model."""
    return " ".join(str(text).split()) or "-"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def _subjects(f: dict, document: dict) -> list[dict]:
    """What an observation is about. OSCAL forbids an empty `subjects` list, so a finding that
    names no model gets the thing it did examine: the op implementation it names (numerical
    checks), else the dataset (data-integrity checks), else the audit itself."""
    if f["models"]:
        return [{"subject-uuid": _uuid("model", m), "type": "component", "title": _line(m)} for m in f["models"]]
    subject = f["id"].split("[", 1)[1].split("]", 1)[0] if "[" in f["id"] else ""
    if f["suite"] == "numerical" and subject and subject != "-":
        return [{"subject-uuid": _uuid("implementation", subject), "type": "component",
                 "title": _line(f"SwiGLU op implementation {subject}")}]
    data = (document.get("environment") or {}).get("data") or {}
    if data.get("name"):
        return [{"subject-uuid": _uuid("dataset", str(data["name"])), "type": "inventory-item",
                 "title": _line(f"dataset {data['name']}")}]
    return [{"subject-uuid": _uuid("audit", document["generated_at"]), "type": "party",
             "title": "the audit run"}]


def render_oscal(document: dict) -> str:
    stamp = document["generated_at"]
    tool_uuid = _uuid("tool", document["tool"]["version"])
    observations, risks, findings = [], [], []
    for f in document["findings"]:
        obs_id = _uuid("observation", f["id"])
        value = "not measured" if f["value"] is None else f"{f['value']:.6g}"
        interval = ("" if f["ci_low"] is None else
                    f" ({level_words(f['ci_level'])} CI [{f['ci_low']:.6g}, {f['ci_high']:.6g}])")
        observations.append({
            "uuid": obs_id, "title": _line(f["title"]),
            "description": f"{f['metric']} = {value}{interval}. {f['reason']}",
            "props": [{"name": "status", "ns": NS, "value": f["status"]},
                      {"name": "check", "ns": NS, "value": _line(f["id"])}],
            "methods": ["TEST"], "types": ["finding"], "collected": stamp,
            "subjects": _subjects(f, document),
        })
        related_risks = []
        if f["status"] != "PASS":
            risk_id = _uuid("risk", f["id"])
            related_risks.append({"risk-uuid": risk_id})
            risks.append({
                "uuid": risk_id, "title": _line(f"{f['status']}: {f['title']}"),
                "description": f["explanation"], "statement": f["reason"],
                "status": "open",
                "characterizations": [{
                    "origin": {"actors": [{"type": "tool", "actor-uuid": tool_uuid}]},
                    "facets": [
                        {"name": "likelihood", "system": FACET_SYSTEM, "value": f["likelihood"]},
                        {"name": "impact", "system": FACET_SYSTEM, "value": f["impact"]},
                        {"name": "risk", "system": FACET_SYSTEM, "value": f["severity"]},
                    ],
                }],
                "remediations": [{"uuid": _uuid("remediation", f["id"]), "lifecycle": "recommendation",
                                  "title": "Suggested mitigation", "description": f["mitigation"]}],
                "related-observations": [{"observation-uuid": obs_id}],
            })
        for rmf_id in f["rmf"]:
            findings.append({
                "uuid": _uuid("finding", f["id"], rmf_id), "title": _line(f"{rmf_id}: {f['title']}"),
                "description": f"Provides evidence for NIST AI RMF 1.0 {rmf_id}. {f['reason']}",
                "target": {"type": "objective-id", "target-id": rmf_id.replace(" ", "-").lower(),
                           "status": {"state": "satisfied" if f["status"] == "PASS" else "not-satisfied"}},
                "related-observations": [{"observation-uuid": obs_id}],
                **({"related-risks": related_risks} if related_risks else {}),
            })
    result = {
        "uuid": _uuid("result", stamp),
        "title": _line(f"swiglu-audit {document['config']['profile']} audit: {document['summary']['verdict']}"),
        "description": "Robustness and security audit of a SwiGLU candidate against baseline architectures.",
        "start": stamp,
        "reviewed-controls": {"control-selections": [{"include-all": {}}]},
        "observations": observations,
        **({"risks": risks} if risks else {}),
        **({"findings": findings} if findings else {}),
    }
    doc = {"assessment-results": {
        "uuid": _uuid("assessment-results", stamp),
        "metadata": {"title": "swiglu-audit assessment results", "last-modified": stamp,
                     "version": document["tool"]["version"], "oscal-version": OSCAL_VERSION,
                     "parties": [{"uuid": tool_uuid, "type": "organization", "name": "swiglu-audit"}]},
        "import-ap": {"href": "#swiglu-audit-assessment-plan"},
        "results": [result],
    }}
    return json.dumps(doc, indent=2)
