"""Checks a tempest run (its subunit v2 stream) against the list of expected failures.

usage: tempest_check.py RESULTS.subunit EXPECTED.txt

EXPECTED.txt: one regular expression per line, matched (re.search) against test ids without
their [id-...,tags] suffix, then `#` and the reason, which is required. Blank lines and lines
starting with `#` are comments.

Exit status 1 when a test failed that no line expects, when a listed line matched a test that
passed (the list must stay true), or when nothing ran. Skips are printed, grouped by reason.
"""

import collections
import re
import sys

import subunit
import testtools


def load_expected(path):
    entries = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pattern, sep, reason = line.partition("#")
            if not sep or not reason.strip():
                sys.exit(f"{path}:{n}: an expected failure needs a reason after '#'")
            entries.append((re.compile(pattern.strip()), reason.strip()))
    return entries


def load_results(path):
    tests = {}

    def on_test(test):
        tid = re.sub(r"\[.*\]$", "", test["id"])
        reason = test["details"].get("reason")
        tb = test["details"].get("traceback")
        tests[tid] = (
            test["status"],
            reason.as_text().strip() if reason else "",
            tb.as_text() if tb else "",
        )

    with open(path, "rb") as f:
        stream = subunit.ByteStreamToStreamResult(f, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        stream.run(result)
        result.stopTestRun()
    return tests


def main():
    tests = load_results(sys.argv[1])
    expected = load_expected(sys.argv[2])
    counts = collections.Counter(status for status, _, _ in tests.values())
    print("tempest results: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    skips = collections.defaultdict(list)
    for tid, (status, reason, _) in sorted(tests.items()):
        if status == "skip":
            skips[reason or "(no reason)"].append(tid)
    for reason, ids in sorted(skips.items()):
        print(f"skipped ({len(ids)}): {reason}")
        for tid in ids:
            print(f"    {tid}")

    bad = 0
    used = set()
    for tid, (status, _, tb) in sorted(tests.items()):
        match = next((e for e in expected if e[0].search(tid)), None)
        if status == "fail":
            if match:
                used.add(match[0].pattern)
                print(f"expected failure: {tid} ({match[1]})")
            else:
                bad += 1
                print(f"UNEXPECTED FAILURE: {tid}")
                print("\n".join("    " + line for line in tb.strip().splitlines()[-60:]))
        elif status == "success" and match:
            bad += 1
            print(f"PASSED BUT LISTED AS EXPECTED TO FAIL: {tid} ({match[1]})")
    ran = counts.get("success", 0) + counts.get("fail", 0)
    if ran == 0:
        print("no test ran")
        return 1
    if bad:
        print(f"{bad} result(s) differ from {sys.argv[2]}")
        return 1
    print("tempest: every result is as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
