"""The test suite's time budget (issue 39), read from the JUnit report `make test` writes: prints the suite's
time against the budget and every test not marked ``slow`` that took over its limit; exits 1 when over.

    .venv/bin/python benchmarks/test_budget.py [.pytest_cache/junit.xml]

A benchmark, not a timed test: timings vary by machine (these 2-core machines differ ~2.7× per thread), so CI
prints this (.ci/run) and does not fail on it; the next session reads it. Lower SUITE_BUDGET_S as the suite gets
faster: it is a ratchet, and the goal is TARGET_S.
"""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Measured: 1,190 and 1,205 s (394 tests on two xdist workers, fresh clones, 2-core AMD EPYC with AVX-512, alone,
# 2026-12-06; 2,818 s on one process before); +8 % margin.
SUITE_BUDGET_S = 1300
TARGET_S = 720  # issue 39: make test in 12 minutes on the AVX-512 machine (about 35 on the AVX2-only one)
NON_SLOW_LIMIT_S = 30  # a test over this is marked slow (pytest.mark.slow) or made smaller


def durations(report: Path) -> tuple[float, dict[str, float]]:
    """(the suite's seconds, seconds per test id) from a JUnit XML report. The suite's are its wall time (with
    pytest-xdist too); a test's are its own, which grow when the other worker is busy."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = {}
    for case in root.iter("testcase"):
        path = case.get("classname", "").replace(".", "/")
        tests[f"{path}.py::{case.get('name')}"] = float(case.get("time", 0))
    return sum(float(s.get("time", 0)) for s in suites), tests


def slow_tests() -> set[str]:
    """Ids of the tests marked slow (pytest's own collection: markers are not in the report)."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=", "-m", "slow",
                        "-p", "no:cacheprovider"],
                       cwd=REPO, capture_output=True, text=True, check=True)
    return {line.strip() for line in r.stdout.splitlines() if "::" in line}


def main(argv: list[str]) -> int:
    report = Path(argv[0]) if argv else REPO / ".pytest_cache" / "junit.xml"
    total, tests = durations(report)
    slow = slow_tests()
    over = sorted(((t, s) for t, s in tests.items() if s > NON_SLOW_LIMIT_S and t not in slow), key=lambda p: -p[1])
    print(f"test_budget: suite {total:.0f} s for {len(tests)} tests; budget {SUITE_BUDGET_S} s, target {TARGET_S} s"
          f" -> {'OVER BUDGET' if total > SUITE_BUDGET_S else 'within budget'}")
    for t, s in over:
        print(f"test_budget: {s:.1f} s > {NON_SLOW_LIMIT_S} s, not marked slow: {t}")
    return int(total > SUITE_BUDGET_S or bool(over))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
