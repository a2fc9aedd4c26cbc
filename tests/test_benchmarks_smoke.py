"""The benchmark scripts still run: each one on tiny sizes, in a subprocess.

The benchmarks are not part of the test run (they take minutes and their figures
depend on the machine); this only checks that each script starts, finishes with
exit code 0 and prints its summary line. Always on SQLite in a temporary folder.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"

CASES = {
    "seed_table": ["--rows", "200"],
    "accuracy": ["--rows", "200"],
    "overhead": ["--sizes", "50,100", "--rounds", "1", "--min-seconds", "0"],
    "hotpaths": ["--rows", "200", "--repeat", "1"],
    "bytecodes": [
        *("--shape", "items10", "--shape", "jsonapi", "--requests", "1", "--top", "3", "--floor")
    ],
    "shapes": ["--quick", "--memory", "--scale", "0.01", "--overhead-size", "200", "--rounds", "1"],
}
# every page shape of shapes.py: each must get a row in its results table
SHAPES = [
    "overhead",
    "items10",
    "items1k",
    "items10k",
    "nplus1",
    "distinct100",
    "reads10k",
    "wide10k",
    "jsonapi",
]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # -W error: a warning in a benchmark is a bug in it, as it would be in a test
        [sys.executable, "-W", "error", str(BENCHMARKS / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_on_tiny_sizes(script: str, tmp_path: pathlib.Path) -> None:
    url = "sqlite:///" + str(tmp_path / f"{script}.sqlite")
    proc = run(script, *CASES[script], "--database-url", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("summary: "), proc.stdout[-3000:]
    assert lines[1].startswith("machine: ")
    # -W error does not reach "Exception ignored" reports (e.g. a ResourceWarning
    # while a worker process shuts down): they only show on stderr
    for marker in ("Traceback", "Warning", "Exception ignored"):
        assert marker not in proc.stderr, proc.stderr[-3000:]
    if script == "shapes":
        check_shapes_output(lines)
    if script == "bytecodes":
        check_bytecodes_floor(lines)


def check_bytecodes_floor(lines: list[str]) -> None:
    """bytecodes.py --floor: per page, the no-op stand-ins add bytecodes to B,
    each less than the panel itself adds, and both together the most."""
    pages = [x for x in lines if re.match(r"(items10|jsonapi) \[n=", x)]
    assert len(pages) == 2, lines
    for page in pages:
        b, d = (int(m.replace(",", "")) for m in re.findall(r" [BD] ([\d,]+)", page))
        start = lines.index(page)
        floors = {}
        for x in lines[start:]:
            m = re.match(r"  floor: B \+ (.+?) ([\d,]+) \(", x)
            if m:
                floors[m.group(1)] = int(m.group(2).replace(",", ""))
            if len(floors) == 3:
                break
        assert set(floors) == {"hooks", "panel", "hooks + panel"}, lines[start:]
        assert b < floors["hooks"] < floors["hooks + panel"] < d, (page, floors)
        assert b < floors["panel"] < floors["hooks + panel"], (page, floors)


def check_shapes_output(lines: list[str]) -> None:
    """shapes.py: a results row per page shape and toolbar set, C/A, the goal count."""
    header = next(i for i, x in enumerate(lines) if x.startswith("shape "))
    table = lines[header:]
    for shape in SHAPES:
        for toolbar_set in ("default", "lean"):
            assert any(x.split()[:2] == [shape, toolbar_set] for x in table), (shape, toolbar_set)
    assert any(x.startswith("C/A (QueryMem installed but inactive") for x in lines)
    assert lines[-1].startswith("summary: worst ratio "), lines[-1]
    assert "goals met: " in lines[-1]


def test_every_benchmark_has_help() -> None:
    # one interpreter for all of them: the imports are most of the time
    code = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(BENCHMARKS)!r})\n"
        "for script in sys.argv[1:]:\n"
        "    sys.argv = [script, '--help']\n"
        "    try:\n"
        "        runpy.run_path(script, run_name='__main__')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (script, exc.code)\n"
    )
    scripts = [str(BENCHMARKS / f"{name}.py") for name in sorted(CASES)]
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, *scripts],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("usage: ") == len(CASES)
