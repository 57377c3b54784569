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


def test_bad_input_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    assert main(["show", str(bad)]) == 4
    assert "cannot read" in capsys.readouterr().err
    bad.write_text(json.dumps({"schema_version": 99}))
    assert main(["render", str(bad)]) == 4
    assert "schema_version 99" in capsys.readouterr().err
    assert main(["open", str(tmp_path / "missing")]) == 4
    assert "no report" in capsys.readouterr().err


def _reports(tmp_path, old_value=0.5, new_value=0.3):
    """Two report.json files whose one finding drops from old_value to new_value, far past the noise."""
    from test_history import _doc

    paths = []
    for name, value in (("old.json", old_value), ("new.json", new_value)):
        (tmp_path / name).write_text(json.dumps(_doc(value, (value - 0.05, value + 0.05))))
        paths.append(str(tmp_path / name))
    return paths


@pytest.mark.parametrize("shape", [[], {"schema_version": 1}, {"schema_version": 1, "summary": {}, "findings": [1]},
                                   {"schema_version": 1, "findings": []}])
@pytest.mark.parametrize("command", ["show", "render", "compare", "merge"])
def test_json_of_the_wrong_shape_is_a_usage_error_not_a_traceback(tmp_path, capsys, monkeypatch, shape, command):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(shape))
    good = _reports(tmp_path)[0]
    args = {"show": [str(bad)], "render": [str(bad)], "compare": [good, str(bad)], "merge": [str(bad), good]}[command]
    assert main([command, *args]) == 4
    err = capsys.readouterr().err
    assert err.startswith("swiglu-audit: ") and "bad.json" in err


def test_gates_must_be_finite_amounts_of_zero_or_more(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old, new = _reports(tmp_path)
    assert main(["compare", old, new]) == 1  # the regression
    assert main(["compare", old, new, "--gate", "default=0.5"]) == 0  # a gate wider than the drop
    for gate in ("default=inf", "default=nan", "default=-0.1", "default=-5%", "default", "=0.1"):
        assert main(["compare", old, new, "--gate", gate]) == 4, gate
        assert "--gate" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit]\ngates = 3\n")
    assert main(["compare", old, new]) == 4
    assert "[tool.swiglu_audit.gates] must be a table" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit.gates]\ndefault = \"inf\"\n")
    assert main(["compare", old, new]) == 4
    assert "finite" in capsys.readouterr().err
    (tmp_path / "pyproject.toml").write_text("[tool.swiglu_audit\n")
    assert main(["compare", old, new]) == 4
    assert "not valid TOML" in capsys.readouterr().err


def test_render_and_merge_of_a_report_missing_its_other_parts_say_so(tmp_path, capsys):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"schema_version": 1, "findings": [],
                                "summary": {"verdict": "PASS", "counts": {}, "breaches_policy": False}}))
    assert main(["show", str(bare)]) == 0 and capsys.readouterr().out.startswith("verdict: PASS")
    assert main(["render", str(bare), "-o", str(tmp_path / "x.html")]) == 4
    assert "is not a complete report" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(bare.read_text()), "generated_at": "later"}))
    assert main(["merge", str(bare), str(other), "-o", str(tmp_path / "out")]) == 4
    assert "the shard reports cannot be merged (KeyError" in capsys.readouterr().err
