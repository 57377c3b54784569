import json

import pytest

from swiglu_audit.cli import main
from swiglu_audit.report.writer import write_document


@pytest.fixture
def saved_report(tmp_path, tiny_audit_report):
    write_document(tiny_audit_report, tmp_path / "reports")
    return tmp_path / "reports"


def test_render_rebuilds_the_html_from_json(saved_report, tmp_path, capsys):
    out = tmp_path / "again.html"
    assert main(["render", str(saved_report / "report.json"), "-o", str(out)]) == 0
    assert out.read_text() == (saved_report / "report.html").read_text()


def test_show_prints_findings_and_exits_by_policy(saved_report, capsys):
    doc = json.loads((saved_report / "report.json").read_text())
    code = main(["show", str(saved_report / "report.json")])
    out = capsys.readouterr().out
    assert code == (1 if doc["summary"]["breaches_policy"] else 0)
    assert out.startswith(f"verdict: {doc['summary']['verdict']}")
    assert len(out.strip().splitlines()) == 1 + len(doc["findings"])


def test_list_and_open(saved_report, tmp_path, capsys, monkeypatch):
    assert main(["list", str(tmp_path)]) == 0
    assert "report.json" in capsys.readouterr().out
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert main(["open", str(saved_report)]) == 0
    assert opened and opened[0].endswith("report.html")


def test_bad_input_names_the_problem(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="cannot read"):
        main(["show", str(bad)])
    bad.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(SystemExit, match="schema_version 99"):
        main(["render", str(bad)])
    with pytest.raises(SystemExit, match="no report"):
        main(["open", str(tmp_path / "missing")])
