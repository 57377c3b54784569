"""The rooms of the house and their import rules (DESIGN.md section 3): each sub-package or root
module sits on a floor, and imports only from lower floors (lazy imports inside functions count;
imports for type checking only do not). A new arrow up fails here, and so would a circle between
rooms (rooms on strictly lower floors cannot import back). Torch-free rooms are checked file by
file, and as a whole: importing them all in a fresh interpreter must not import torch."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "swiglu_audit"

# room -> floor. Rooms are the sub-packages and the modules at the package's root (its front door).
FLOORS = {
    "errors": 0, "util": 0,
    "verdicts": 1, "settings": 1,  # statistics, conditions, findings; the settings' schema
    "scheduled": 2,  # saved runs, regression gates: read verdicts
    "config": 3,  # builds the settings, names the gates
    "training": 4,  # data, models, training, cache, devices, progress
    "methods": 5,  # attacks, detectors, corruptions: on models and data
    "checks": 6, "session": 6,  # what is judged and how; the notebook's entry point
    "measure": 7, "report": 7,  # measurements from a session; reports from findings
    "planning": 8, "cli": 8, "jobs": 8,  # the job graph and its executors run what the suites declare
    "pytest": 9,  # wiring only
    "suites": 10,
}
TORCH_FREE = ["errors", "util", "verdicts", "settings", "scheduled", "config", "checks", "report", "cli", "pytest",
              "training/specs.py", "training/progress.py", "training/shared_store.py", "training/planned.py",
              "methods/attack_registry.py",
              "methods/fairness.py", "methods/privacy.py", "jobs"]


def _room(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "swiglu_audit", module
    # `from swiglu_audit import __version__` reads the package's face, not a room
    return parts[1] if len(parts) > 1 and not parts[1].startswith("__") else "__init__"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(("swiglu_audit",) + (rel[:-1] if rel[-1] == "__init__" else rel))
        yield path, name, path.name == "__init__.py"
    for path in sorted((REPO / "suites").glob("*.py")):
        yield path, "swiglu_audit.suites." + path.stem if path.stem != "__init__" else "swiglu_audit.suites", path.stem == "__init__"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path, module: str, is_package: bool):
    """(line, imported module, at module level) for every import of the package's own modules."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    top = {id(n) for n in tree.body}
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            yield node.lineno, t, id(node) in top


def test_every_room_has_a_floor():
    rooms = {_room(name) for _, name, _ in _modules()} - {"__init__"}
    assert rooms <= set(FLOORS), f"rooms without a floor (add them to FLOORS): {sorted(rooms - set(FLOORS))}"


def test_no_import_runs_back_up_a_floor_or_sideways_into_another_room():
    wrong = []
    for path, name, is_package in _modules():
        here = _room(name)
        for line, target, _ in _imports(path, name, is_package):
            if not target.startswith("swiglu_audit"):
                continue
            there = _room(target)
            if there in (here, "__init__"):
                continue
            if FLOORS.get(there, 99) >= FLOORS.get(here, -1):
                wrong.append(f"{path.relative_to(REPO)}:{line} ({here}, floor {FLOORS.get(here)}) imports {target} "
                             f"({there}, floor {FLOORS.get(there)})")
    assert wrong == []


@pytest.mark.parametrize("room", TORCH_FREE)
def test_torch_free_rooms_import_no_torch_at_module_level(room):
    paths = [PACKAGE / room] if room.endswith(".py") else sorted((PACKAGE / room).rglob("*.py")) or [PACKAGE / f"{room}.py"]
    for path in paths:
        name = ".".join(("swiglu_audit",) + path.relative_to(PACKAGE).with_suffix("").parts)
        top_level = [t for _, t, top in _imports(path, name, path.name == "__init__.py") if top]
        assert not [t for t in top_level if t.split(".")[0] in ("torch", "torchattacks")], path


def test_the_torch_free_rooms_import_no_torch_even_through_what_they_import():
    import subprocess
    import sys

    modules = []
    for room in TORCH_FREE:
        paths = [PACKAGE / room] if room.endswith(".py") else sorted((PACKAGE / room).rglob("*.py")) or [PACKAGE / f"{room}.py"]
        for path in paths:
            parts = path.relative_to(PACKAGE).with_suffix("").parts
            modules.append(".".join(("swiglu_audit",) + (parts[:-1] if parts[-1] == "__init__" else parts)))
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchattacks'))\n"
        "assert not loaded, loaded[:5]\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
