"""`ikeflow explain`: one source for what codes and causes mean, and the README's cause table."""

import ast
import subprocess
import sys

import pytest

from conftest import ROOT
from ikeflow.diagnose import causes
from ikeflow.explain import CODES, cause_table

PACKAGE = ROOT / "ikeflow"


def explain(*args):
    return subprocess.run([sys.executable, "-m", "ikeflow", "explain", *args], capture_output=True, text=True,
                          timeout=60, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"}, cwd=ROOT)


def emitted_codes() -> set[str]:
    """Every finding code written in the source: the code argument of Finding(...) / CompareFinding(...) in
    diagnose/ and compare/, of the rows of compare/rules.py, and what stalls._code and live's waits return."""
    found = set()
    for path in [*(PACKAGE / "diagnose").glob("*.py"), *(PACKAGE / "compare").glob("*.py")]:
        tree = ast.parse(path.read_text())
        names = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
        for n in ast.walk(tree):
            if not isinstance(n, ast.Call):
                continue
            func = getattr(n.func, "id", getattr(n.func, "attr", ""))
            at = {"Finding": 1, "CompareFinding": 1}.get(func, 4 if func == "Row" and path.name == "rules.py" else None)
            if at is None or len(n.args) <= at:
                continue
            arg = n.args[at]
            for v in (arg.body, arg.orelse) if isinstance(arg, ast.IfExp) else (arg,):
                if isinstance(v, ast.Constant):
                    found.add(v.value)
                elif isinstance(v, ast.Name) and v.id in names:
                    found.add(names[v.id])
    code_fn = next(n for n in ast.walk(ast.parse((PACKAGE / "diagnose" / "stalls.py").read_text()))
                   if isinstance(n, ast.FunctionDef) and n.name == "_code")
    found |= {c.value for r in ast.walk(code_fn) if isinstance(r, ast.Return)
              for c in ast.walk(r) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    live_json = (PACKAGE / "render" / "live_json.py").read_text()
    found |= {"waiting"} if '"code": "waiting"' in live_json else set()
    return found - {""}


def test_every_emitted_code_is_explained_and_nothing_else():
    codes = emitted_codes()
    assert {"stall", "esp-blocked", "waiting", "lost-between-points", "capture-order"} <= codes  # the scan works
    assert codes == set(CODES), (sorted(codes - set(CODES)), sorted(set(CODES) - codes))


def test_every_cause_has_meaning_signature_check_and_examples():
    for table in (causes.MEANS, causes.WIRE, causes.EXAMPLES):
        assert set(table) == set(causes.CAUSES)
    assert all(pair <= set(causes.CAUSES) for pair in causes.TELL)


def test_readme_cause_table_is_the_one_explain_prints():
    readme = (ROOT / "README.md").read_text()
    table = cause_table()
    assert table in readme, ("README 'Diagnosis' differs from ikeflow/diagnose/causes.py; print the table with  "
                             "python3 -c 'from ikeflow.explain import cause_table; print(cause_table())'")


@pytest.mark.parametrize("name,words", [
    ("psk-mismatch", ["means", "on the wire", "look-alike", "peer-id-mismatch:", "check", "ipsec.secrets",
                      "AUTHENTICATION-FAILED"]),
    ("stall", ["finding code", "error", "reported by read, live", "look-alikes"]),
    ("esp-blocked", ["finding code", "cause", "ikev1-esp-oneway.inside.pcap"]),  # both a code and a cause
    ("PSK_MISMATCH", ["psk-mismatch"]),
])
def test_explain_a_name(name, words):
    r = explain(name)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = " ".join(r.stdout.split())  # wrapped at 80 columns: compare without the line breaks
    for w in words:
        assert w in text, (w, r.stdout)
    assert all(len(line) <= 80 for line in r.stdout.splitlines())


def test_explain_without_a_name_lists_every_code_and_cause():
    r = explain()
    assert r.returncode == 0
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ") and not line[2].isspace()}
    assert listed == set(CODES) | set(causes.CAUSES)


@pytest.mark.parametrize("name,says", [
    ("psk-mismatc", "did you mean psk-mismatch"),
    ("esp_blokced", "did you mean esp-blocked"),
    ("frobnicate", "ikeflow explain lists them all"),
])
def test_unknown_name_is_one_line_exit_2(name, says):
    r = explain(name)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ikeflow: no finding code or cause is named '{name}'")
    assert says in lines[0]
