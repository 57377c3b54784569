"""Each interchange format checked by its own ecosystem's tool: OSCAL by compliance-trestle's
models (generated from NIST's OSCAL schema), the JUnit XML by junitparser (a JUnit consumer), and
summary.md by markdown-it-py's GitHub-flavoured table rule."""

import html
import json
import re

import pytest
from test_report import EVIL, sample_document

from swiglu_audit.report.markdown import render_markdown
from swiglu_audit.report.oscal import render_oscal
from swiglu_audit.verdicts.risk import Status, make_finding

HOSTILE = EVIL + ' | "quoted"\n  new line \\| '


def _validate_oscal(document: dict):
    from trestle.oscal.assessment_results import AssessmentResults

    return AssessmentResults.parse_obj(json.loads(render_oscal(document))["assessment-results"])


def test_the_oscal_of_a_real_audit_passes_compliance_trestle(tiny_audit_report):
    results = _validate_oscal(tiny_audit_report).results[0]
    assert len(results.observations) == len(tiny_audit_report["findings"])
    # the checks that concern no model (op, gradcheck, leakage, training and test duplicates, label
    # errors) get a subject
    modelless = [f for f in tiny_audit_report["findings"] if not f["models"]]
    assert len(modelless) == 6
    assert all(o.subjects for o in results.observations)


def test_oscal_with_error_findings_hostile_names_and_no_model_passes_compliance_trestle():
    from swiglu_audit.checks.numerical import OP_PROPERTY

    doc = sample_document(name=HOSTILE)
    doc["findings"].append(make_finding(OP_PROPERTY, [], Status.FAIL, "wrong op", "rule",
                                        subject="fused " + HOSTILE).to_dict())
    doc["findings"].append(make_finding(OP_PROPERTY, [], Status.PASS, "fine", "rule").to_dict())
    results = _validate_oscal(doc).results[0]
    titles = {s.title for o in results.observations for s in o.subjects}
    assert any(t.startswith("SwiGLU op implementation fused") for t in titles)
    assert any(t.startswith("dataset ") for t in titles)
    assert {r.title.split(":")[0] for r in results.risks} >= {"WARN", "ERROR", "FAIL"}


def test_the_junit_xml_of_a_real_audit_carries_every_finding_as_properties(tiny_audit, tiny_audit_report):
    from junitparser import JUnitXml, Properties

    xml = JUnitXml.fromfile(str(tiny_audit / "junit.xml"))
    carried = []
    for suite in xml:
        for case in suite:
            props: dict[str, list[str]] = {}
            for block in case.iterchildren(Properties):
                for prop in block:
                    props.setdefault(prop.name, []).append(prop.value)
            carried += [json.loads(v)["id"] for v in props.get("swiglu_audit.finding", [])]
            for status in props.get("swiglu_audit.status", []):
                assert status in {s.value for s in Status}
    assert sorted(carried) == sorted(f["id"] for f in tiny_audit_report["findings"])


def _gfm_tables(markdown: str) -> list[list[list[str]]]:
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    tables = []
    for table in re.findall(r"<table>(.*?)</table>", rendered, flags=re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
        tables.append([[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", r, flags=re.S)]
                       for r in rows])
    return tables


@pytest.mark.parametrize("name", ["plain", HOSTILE, "a|b", "back\\slash|", "<b>bold</b> *x* _y_ `z`"])
def test_summary_md_renders_as_one_intact_gfm_table_whatever_the_names(name):
    doc = sample_document(name=name)
    tables = _gfm_tables(render_markdown(doc))
    assert len(tables) == 1
    header, *rows = tables[0]
    assert header == ["status", "finding", "value", "why"]
    flagged = [f for f in doc["findings"] if f["status"] != "PASS"]
    assert len(rows) == len(flagged) and all(len(r) == 4 for r in rows)
    for row, finding in zip(rows, flagged):
        # what a reader sees is the text itself, on one line, with no markup made of it
        assert row[1] == " ".join(finding["id"].split())
        assert row[3] == " ".join(finding["reason"].split())
