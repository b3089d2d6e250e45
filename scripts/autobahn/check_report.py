#!/usr/bin/env python3
"""Check an Autobahn|Testsuite fuzzingclient report (reports/index.json).

The report maps each agent (the server under test) to its cases:

    {"tern": {"1.1.1": {"behavior": "OK", "behaviorClose": "OK", ...}, ...}}

A case passes when both `behavior` and `behaviorClose` are "OK". The suite
marks some cases "INFORMATIONAL" (for example 7.1.6, whose close timing it
only records): those are allowed and listed by id. Any other verdict
("NON-STRICT", "FAILED", "WRONG CODE", "UNCLEAN", "UNIMPLEMENTED", ...) fails
the check and is listed with both verdicts.

Exit status: 0 when every case is OK or INFORMATIONAL, 1 when any case failed
or a requested case pattern matched nothing, 2 when the report cannot be read.
"""

import argparse
import fnmatch
import json
import sys

OK = "OK"
INFORMATIONAL = "INFORMATIONAL"
ALLOWED = (OK, INFORMATIONAL)


class ReportError(Exception):
    """The report is missing, is not JSON, or does not have the expected shape."""


def case_sort_key(case_id):
    """Order case ids numerically: 1.1.2 before 1.1.10 before 2.1."""
    parts = []
    for part in case_id.split("."):
        if part.isdigit():
            parts.append((0, int(part), ""))
        else:
            parts.append((1, 0, part))
    return parts


def load_cases(index, agent=None):
    """Return (agent, {case_id: entry}) from a parsed index.json.

    With no agent given, the report must hold exactly one.
    """
    if not isinstance(index, dict) or not index:
        raise ReportError("report holds no agent")

    if agent is None:
        if len(index) != 1:
            names = ", ".join(sorted(index))
            raise ReportError(f"report holds several agents ({names}); pass --agent")
        agent = next(iter(index))

    if agent not in index:
        raise ReportError(f"agent {agent!r} not in report")

    cases = index[agent]
    if not isinstance(cases, dict):
        raise ReportError(f"cases of agent {agent!r} are not an object")

    for case_id, entry in cases.items():
        if not isinstance(entry, dict):
            raise ReportError(f"case {case_id} is not an object")
        for field in ("behavior", "behaviorClose"):
            if not isinstance(entry.get(field), str):
                raise ReportError(f"case {case_id} has no {field} verdict")
    return agent, cases


def check(cases, patterns=()):
    """Classify each case; return a result dict.

    Keys: total, ok (list of ids), informational (ids), failed (list of
    (id, behavior, behaviorClose)), unmatched (patterns matching no case).
    """
    ok, informational, failed = [], [], []
    for case_id in sorted(cases, key=case_sort_key):
        behavior = cases[case_id]["behavior"]
        behavior_close = cases[case_id]["behaviorClose"]
        verdicts = (behavior, behavior_close)

        if any(v not in ALLOWED for v in verdicts):
            failed.append((case_id, behavior, behavior_close))
        elif INFORMATIONAL in verdicts:
            informational.append(case_id)
        else:
            ok.append(case_id)

    # A pattern that matched nothing means the run skipped part of what was
    # asked for (a typo, or the suite stopped early): never a silent pass.
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(c, p) for c in cases)]

    return {
        "total": len(cases),
        "ok": ok,
        "informational": informational,
        "failed": failed,
        "unmatched": unmatched,
    }


def passed(result):
    """True when the run had cases, none failed and every pattern matched."""
    return result["total"] > 0 and not result["failed"] and not result["unmatched"]


def summary_line(result):
    """The one-line summary, e.g. `autobahn: 301 cases, 298 OK, 3 INFORMATIONAL (7.1.6, ...), 0 failed`."""
    info = result["informational"]
    info_text = f"{len(info)} INFORMATIONAL"
    if info:
        info_text += " (" + ", ".join(info) + ")"
    return (
        f"autobahn: {result['total']} cases, {len(result['ok'])} OK, "
        f"{info_text}, {len(result['failed'])} failed"
    )


def counts_line(result):
    """The plain closing line, `autobahn: N passed, N failed`.

    Passed counts OK and INFORMATIONAL cases; failed counts failed cases plus
    case patterns that matched nothing, so that a short run never reads as
    clean.
    """
    passed_count = len(result["ok"]) + len(result["informational"])
    failed_count = len(result["failed"]) + len(result["unmatched"])
    return f"autobahn: {passed_count} passed, {failed_count} failed"


def report_lines(result, cases):
    """Every line to print: failures, unmatched patterns, the summary, the counts."""
    lines = []
    for case_id, behavior, behavior_close in result["failed"]:
        reportfile = cases[case_id].get("reportfile", "")
        detail = f" ({reportfile})" if reportfile else ""
        lines.append(
            f"FAILED {case_id}: behavior={behavior} behaviorClose={behavior_close}{detail}"
        )
    for pattern in result["unmatched"]:
        lines.append(f"MISSING: case pattern {pattern!r} matched no case in the report")
    if result["total"] == 0:
        lines.append("MISSING: the report holds no case")
    lines.append(summary_line(result))
    lines.append(counts_line(result))
    return lines


def split_patterns(text):
    """Split a comma-separated case list such as '1.*,2.*' into patterns."""
    return [p.strip() for p in text.split(",") if p.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", help="path to the report's index.json")
    parser.add_argument("--agent", help="agent name in the report (default: the only one)")
    parser.add_argument(
        "--cases",
        default="",
        help="comma-separated case patterns that must each match a case, e.g. '1.*,2.*'",
    )
    args = parser.parse_args(argv)

    try:
        with open(args.index, encoding="utf-8") as f:
            index = json.load(f)
        agent, cases = load_cases(index, args.agent)
    except OSError as e:
        print(f"autobahn: cannot read report: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        print(f"autobahn: report is not valid JSON: {e}", file=sys.stderr)
        return 2
    except ReportError as e:
        print(f"autobahn: malformed report {args.index}: {e}", file=sys.stderr)
        return 2

    result = check(cases, split_patterns(args.cases))
    for line in report_lines(result, cases):
        print(line)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
