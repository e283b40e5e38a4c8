#!/usr/bin/python3
"""Lists the tests of a ctest run that skipped, each with the reason it printed.

Usage: scripts/list-skips.py JUNIT_XML     (the file of `ctest --output-junit`)

A test skipped when ctest did not run it to a pass or a failure (status "notrun": exit 77 with
SKIP_RETURN_CODE, or GTEST_SKIP, which gtest_discover_tests maps to a skip by the "[  SKIPPED ]"
line; also "disabled"), or when it passed but left out a part of itself and said so with a line
starting "SKIP (part):". The reason is what the test printed: the "SKIP..." lines of a script,
the message after "file:line: Skipped" of GoogleTest.

Exit: 0 nothing skipped, 1 something skipped (listed on stdout), 2 the report is unreadable.
"""
import sys
import xml.etree.ElementTree as ET


def gtest_reasons(lines):
    """The messages of GTEST_SKIP(): the lines between "...: Skipped" and "[  SKIPPED ]"."""
    reasons, inside = [], False
    for line in lines:
        if line.startswith("[  SKIPPED ]"):
            inside = False
        elif inside and line.strip():
            reasons.append(line.strip())
        elif line.endswith(": Skipped"):
            inside = True
    return reasons


def skips(testcase):
    """(kind, reason) pairs of one <testcase>; none when it ran whole."""
    lines = (testcase.findtext("system-out") or "").splitlines()
    if testcase.get("status") in ("notrun", "disabled"):
        reasons = [l.removeprefix("SKIP:").strip() for l in lines if l.startswith("SKIP")]
        reasons += gtest_reasons(lines)
        if not reasons:
            skipped = testcase.find("skipped")
            why = skipped.get("message") if skipped is not None else testcase.get("status")
            reasons = [f"(no reason printed; ctest: {why})"]
        return [("skipped", "; ".join(reasons))]
    return [("skipped in part", l[len("SKIP (part):"):].strip())
            for l in lines if l.startswith("SKIP (part):")]


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
    except (OSError, ET.ParseError) as e:
        print(f"list-skips: cannot read the ctest report {sys.argv[1]}: {e}", file=sys.stderr)
        return 2
    found = [(c.get("name"), kind, reason) for c in cases for kind, reason in skips(c)]
    for name, kind, reason in found:
        print(f"{kind}: {name}: {reason}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
