"""What the QueryMem panel adds to a page, in Python bytecodes executed: a
deterministic companion to shapes.py.

shapes.py times each page against the toolbar alone; on this machine (2
shared cores whose speed drifts by up to 1.6x) a change of a few percent is
lost in its quartiles. This script runs shapes.py's pages in the same worker
set-up (its ``Worker``, one process per configuration, ``PYTHONHASHSEED=0``)
and counts, with ``sys.settrace`` opcode events, the bytecodes each function
executes per request: the same count on every run, whatever else the machine
is doing. It prints the total per request in B (toolbar) and D (toolbar and
QueryMem), D - B, and the functions whose counts differ most.

A bytecode is not a unit of time (a ``sys.getsizeof`` call is one bytecode,
a frame materialised by ``sys._getframe`` none, and the garbage collector is
not counted at all): use this to find where the added work is and to check
that a change removed it, and shapes.py for what it costs.

``--cachegrind`` counts machine instructions and simulated cache misses
instead (valgrind's cachegrind, ~50x slower): each configuration runs twice,
with ``--requests`` and twice as many, and the difference is divided by the
extra requests, so start-up and warm-up cancel out. Also the same on every
run. Where D/B in instructions is well below D/B in CPU time (shapes.py),
the rest is the memory system: cache misses, not work.

    python benchmarks/bytecodes.py                     # items10, jsonapi, items1k; lean toolbar
    python benchmarks/bytecodes.py --shape nplus1 --requests 2 --top 40
    python benchmarks/bytecodes.py --toolbar default
    python benchmarks/bytecodes.py --cachegrind --shape items1k --shape items10k
    python benchmarks/bytecodes.py --cachegrind --floor --shape items10k

``--floor`` also counts B with no-op stand-ins for
what any design of the panel needs: a listener on each event flask-querymem
listens to, and a panel in the toolbar (``_floor.py``). What they add is the
part of D - B that no change to flask-querymem's own code can remove.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t

from _common import git_commit, print_header, print_table, url_or_temp

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHAPES = ("items10", "jsonapi", "items1k")


def _where(code: t.Any) -> str:
    path = code.co_filename.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/flask_querymem/" in path:
        path = "flask_querymem/" + path.split("/flask_querymem/", 1)[1]
    else:
        path = os.path.basename(path)
    return f"{path}:{code.co_name}@{code.co_firstlineno}"


def _warm_worker(config: str, shape: str, url: str, scale: float) -> t.Any:
    """shapes.py's worker for ``config``; ``B:lean+hooks+panel`` is B with the
    ``--floor`` stand-ins (_floor.py): no-op listeners, a no-op panel."""
    import shapes

    base, *extras = config.split("+")
    if extras:  # only then: B and D import nothing more than in shapes.py
        import _floor
    if "hooks" in extras:
        _floor.install_noop_listeners()
    worker = shapes.Worker(base, url, shapes.sizes_for(scale, 1000))
    if "panel" in extras:
        app = worker.app_for(shape)[0]
        app.config["DEBUG_TB_PANELS"] = [*app.config["DEBUG_TB_PANELS"], _floor.NOOP_PANEL]
    for _ in range(5):
        worker.request(shape)
    return worker


def serve(config: str, shape: str, requests: int, url: str, scale: float) -> None:
    worker = _warm_worker(config, shape, url, scale)
    for _ in range(requests):
        worker.request(shape)


def count(config: str, shape: str, requests: int, url: str, scale: float) -> dict[str, t.Any]:
    """In this process: warm the page up, then count bytecodes per function over
    ``requests`` requests (per request)."""
    worker = _warm_worker(config, shape, url, scale)
    from flask_querymem import memory

    measure_code = memory.measure_instance.__code__
    counts: collections.Counter[t.Any] = collections.Counter()
    sized = [0]  # calls of memory.measure_instance: instances sized

    def tracer(frame: t.Any, event: str, arg: t.Any) -> t.Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            counts[frame.f_code] += 1
        elif event == "call" and frame.f_code is measure_code:
            sized[0] += 1
        return tracer

    sys.settrace(tracer)
    try:
        for _ in range(requests):
            worker.request(shape)
    finally:
        sys.settrace(None)
    per_function: collections.Counter[str] = collections.Counter()
    for code, n in counts.items():
        per_function[_where(code)] += n
    return {
        "total": sum(counts.values()) / requests,
        "sized": sized[0] / requests,
        "functions": {k: v / requests for k, v in per_function.items()},
    }


#: cachegrind's events, in the order of its "events:" line (with --cache-sim=yes)
CACHE_EVENTS = ("Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw")


def cachegrind(config: str, shape: str, requests: int, url: str, scale: float) -> dict[str, float]:
    """Instructions and simulated cache misses per request of ``shape`` in ``config``."""
    totals = []
    with tempfile.TemporaryDirectory(prefix="querymem-cachegrind-") as tmp:
        for n in (requests, 2 * requests):
            out = os.path.join(tmp, f"out.{n}")
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=yes"]
            cmd += [f"--cachegrind-out-file={out}", sys.executable, os.path.abspath(__file__)]
            cmd += ["--worker", config, "--shape", shape, "--requests", str(n)]
            cmd += ["--database-url", url, "--scale", str(scale), "--no-trace"]
            env = dict(os.environ, PYTHONHASHSEED="0")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{config} {shape}: valgrind failed\n{proc.stderr[-3000:]}")
            with open(out) as f:
                lines = f.read().splitlines()
            events = next(ln for ln in lines if ln.startswith("events:")).split()[1:]
            summary = [
                int(x) for x in next(ln for ln in lines if ln.startswith("summary:")).split()[1:]
            ]
            totals.append(dict(zip(events, summary)))
    return {e: (totals[1].get(e, 0) - totals[0].get(e, 0)) / requests for e in CACHE_EVENTS}


def report_cachegrind(
    shapes_: list[str], sizes: t.Any, args: argparse.Namespace, url: str
) -> list[str]:
    summary = []
    rows = []
    floor_rows = []
    for shape in shapes_:
        n = sizes[shape]
        # enough requests that a garbage collection falling in one run and not
        # the other moves the figure by ~1%, not ~5%
        requests = args.requests or max(1, min(40, 20_000 // max(n, 1)))
        b = cachegrind(f"B:{args.toolbar}", shape, requests, url, args.scale)
        d = cachegrind(f"D:{args.toolbar}", shape, requests, url, args.scale)
        if args.floor:
            for extra in ("hooks", "panel", "hooks+panel"):
                f = cachegrind(f"B:{args.toolbar}+{extra}", shape, requests, url, args.scale)
                floor_rows.append(
                    (
                        shape,
                        f"B + {extra.replace('+', ' + ')}",
                        f"{f['Ir']:,.0f}",
                        f"{f['Ir'] / b['Ir']:.3f}",
                        f"{(f['Ir'] - b['Ir']) / max(d['Ir'] - b['Ir'], 1):.0%}",
                    )
                )
        l1 = ("I1mr", "D1mr", "D1mw")
        for name, x, y in (
            ("instructions", b["Ir"], d["Ir"]),
            ("L1 misses (I1+D1)", sum(b[e] for e in l1), sum(d[e] for e in l1)),
            ("  of which I1", b["I1mr"], d["I1mr"]),
            (
                "last-level misses",
                b["ILmr"] + b["DLmr"] + b["DLmw"],
                d["ILmr"] + d["DLmr"] + d["DLmw"],
            ),
        ):
            rows.append(
                (
                    shape if name == "instructions" else "",
                    name,
                    f"{x:,.0f}",
                    f"{y:,.0f}",
                    f"{y / x:.3f}" if x else "-",
                )
            )
        summary.append(f"{shape} instructions x{d['Ir'] / b['Ir']:.3f}")
    print()
    print("per request (valgrind cachegrind, simulated caches):")
    print_table(["page", "count", "B", "D", "D/B"], rows)
    if floor_rows:
        print()
        print(
            "the floor: B with no-op stand-ins for what any design of the panel needs "
            "(_floor.py), instructions per request"
        )
        print_table(["page", "configuration", "instructions", "x B", "share of D - B"], floor_rows)
    return summary


def run_worker(config: str, shape: str, requests: int, url: str, scale: float) -> dict[str, t.Any]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = [sys.executable, *(["-W", "error"] if sys.warnoptions == ["error"] else [])]
    cmd += [os.path.abspath(__file__), "--worker", config, "--shape", shape]
    cmd += ["--requests", str(requests), "--database-url", url, "--scale", str(scale)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{config} {shape}: worker failed\n{proc.stderr[-3000:]}")
    return t.cast("dict[str, t.Any]", json.loads(proc.stdout.strip().splitlines()[-1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--shape",
        action="append",
        help="a shapes.py page (repeatable; default: " + ", ".join(DEFAULT_SHAPES) + ")",
    )
    p.add_argument("--toolbar", choices=("lean", "default"), default="lean")
    p.add_argument("--requests", type=int, help="requests counted (default: by page size)")
    p.add_argument("--top", type=int, default=25, help="functions listed per page")
    p.add_argument("--scale", type=float, default=1.0, help="as shapes.py's --scale")
    p.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    p.add_argument(
        "--cachegrind",
        action="store_true",
        help="count instructions and cache misses under valgrind instead of bytecodes",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also count B with no-op listeners and a no-op panel (_floor.py)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--no-trace", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes_ = args.shape or list(DEFAULT_SHAPES)
    if args.worker:
        sys.stdout, channel = sys.stderr, sys.stdout  # only the result on stdout
        if args.no_trace:  # under valgrind: the requests only
            serve(args.worker, shapes_[0], args.requests, args.database_url, args.scale)
            return 0
        result = count(args.worker, shapes_[0], args.requests, args.database_url, args.scale)
        channel.write(json.dumps(result) + "\n")
        return 0
    sys.path.insert(0, HERE)
    import shapes

    url, tmp = url_or_temp(args.database_url, "bytecodes.sqlite")
    print_header(url, "bytecodes: {url}; shapes.py's pages, " + f"{args.toolbar} toolbar")
    import flask_querymem  # the copy the workers import too (PYTHONPATH)

    print(f"flask-querymem at {git_commit(os.path.dirname(flask_querymem.__file__))}")
    sizes = shapes.sizes_for(args.scale, 1000)
    summary: list[str] = []
    if args.cachegrind and shutil.which("valgrind") is None:
        print("--cachegrind needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    try:
        shapes.seed(url, sizes)
        if args.cachegrind:
            summary = report_cachegrind(shapes_, sizes, args, url)
        for shape in [] if args.cachegrind else shapes_:
            n = sizes[shape]
            requests = args.requests or max(1, min(20, 10_000 // max(n, 1)))
            b = run_worker(f"B:{args.toolbar}", shape, requests, url, args.scale)
            d = run_worker(f"D:{args.toolbar}", shape, requests, url, args.scale)
            added = d["total"] - b["total"]
            diff = {
                k: d["functions"].get(k, 0.0) - b["functions"].get(k, 0.0)
                for k in set(b["functions"]) | set(d["functions"])
            }
            ours = sum(v for k, v in diff.items() if k.startswith("flask_querymem/"))
            print()
            print(
                f"{shape} [n={n}], per request over {requests}: B {b['total']:,.0f}, "
                f"D {d['total']:,.0f}, added {added:,.0f} ({added / b['total']:+.1%}); "
                f"in flask_querymem's own code {ours:,.0f}; instances sized {d['sized']:g}"
            )
            top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: args.top]
            print_table(["D - B", "function"], [(f"{v:,.0f}", k) for k, v in top])
            for extra in ("hooks", "panel", "hooks+panel") if args.floor else ():
                f = run_worker(f"B:{args.toolbar}+{extra}", shape, requests, url, args.scale)
                print(
                    f"  floor: B + {extra.replace('+', ' + ')} {f['total']:,.0f} "
                    f"({f['total'] / b['total'] - 1:+.1%}; "
                    f"{(f['total'] - b['total']) / max(added, 1):.0%} of D - B)"
                )
            summary.append(f"{shape} {added / b['total']:+.1%}")
    finally:
        shapes.drop(url)
        if tmp is not None:
            tmp.cleanup()
    print()
    what = "D/B per request" if args.cachegrind else "bytecodes added per request"
    print(f"summary: {what}: " + ", ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
