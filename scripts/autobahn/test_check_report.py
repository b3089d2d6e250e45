"""Unit tests of check_report.py over small synthetic index.json files.

Run from the repository root:
    python3 -m unittest discover -s scripts/autobahn -p 'test_*.py'
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check_report  # noqa: E402


def entry(behavior, behavior_close=None, reportfile=None):
    """One case as wstest writes it; behaviorClose defaults to behavior."""
    e = {
        "behavior": behavior,
        "behaviorClose": behavior if behavior_close is None else behavior_close,
        "duration": 1,
        "remoteCloseCode": 1000,
    }
    if reportfile:
        e["reportfile"] = reportfile
    return e


class RunMain(unittest.TestCase):
    """Helpers that write an index.json and run the command line on it."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, content):
        path = os.path.join(self.dir.name, "index.json")
        with open(path, "w", encoding="utf-8") as f:
            if isinstance(content, str):
                f.write(content)
            else:
                json.dump(content, f)
        return path

    def run_main(self, content, *args):
        path = self.write(content)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check_report.main([path, *args])
        return code, out.getvalue().splitlines(), err.getvalue()


class AllowedVerdicts(RunMain):
    def test_all_ok_passes(self):
        index = {"tern": {"1.1.1": entry("OK"), "1.1.2": entry("OK"), "2.1": entry("OK")}}
        code, out, _ = self.run_main(index)
        self.assertEqual(code, 0)
        self.assertEqual(
            out,
            [
                "autobahn: 3 cases, 3 OK, 0 INFORMATIONAL, 0 failed",
                "autobahn: 3 passed, 0 failed",
            ],
        )

    def test_informational_is_allowed_and_listed(self):
        index = {
            "tern": {
                "7.1.6": entry("INFORMATIONAL"),
                "7.13.1": entry("INFORMATIONAL", "OK"),
                "1.1.1": entry("OK"),
            }
        }
        code, out, _ = self.run_main(index)
        self.assertEqual(code, 0)
        self.assertEqual(
            out,
            [
                "autobahn: 3 cases, 1 OK, 2 INFORMATIONAL (7.1.6, 7.13.1), 0 failed",
                "autobahn: 3 passed, 0 failed",
            ],
        )

    def test_close_informational_with_ok_behavior_is_allowed(self):
        code, out, _ = self.run_main({"tern": {"7.1.6": entry("OK", "INFORMATIONAL")}})
        self.assertEqual(code, 0)
        self.assertIn("1 INFORMATIONAL (7.1.6)", out[-2])


class FailingVerdicts(RunMain):
    def test_each_non_ok_verdict_fails(self):
        for verdict in ("NON-STRICT", "FAILED", "WRONG CODE", "UNCLEAN", "UNIMPLEMENTED"):
            with self.subTest(verdict=verdict):
                code, out, _ = self.run_main({"tern": {"3.2": entry(verdict, "OK")}})
                self.assertEqual(code, 1)
                self.assertEqual(out[0], f"FAILED 3.2: behavior={verdict} behaviorClose=OK")
                self.assertEqual(out[-2], "autobahn: 1 cases, 0 OK, 0 INFORMATIONAL, 1 failed")
                self.assertEqual(out[-1], "autobahn: 0 passed, 1 failed")

    def test_bad_close_verdict_alone_fails(self):
        code, out, _ = self.run_main({"tern": {"5.15": entry("OK", "WRONG CODE")}})
        self.assertEqual(code, 1)
        self.assertEqual(out[0], "FAILED 5.15: behavior=OK behaviorClose=WRONG CODE")

    def test_informational_does_not_hide_failure(self):
        code, out, _ = self.run_main({"tern": {"7.1.6": entry("INFORMATIONAL", "FAILED")}})
        self.assertEqual(code, 1)
        self.assertTrue(out[0].startswith("FAILED 7.1.6:"))

    def test_verdicts_are_case_sensitive(self):
        code, _, _ = self.run_main({"tern": {"1.1.1": entry("ok")}})
        self.assertEqual(code, 1)

    def test_failures_listed_in_numeric_order_with_report_file(self):
        index = {
            "tern": {
                "10.1.1": entry("FAILED"),
                "1.1.10": entry("FAILED"),
                "1.1.2": entry("FAILED", reportfile="tern_case_1_1_2.json"),
                "1.1.1": entry("OK"),
                "7.1.6": entry("INFORMATIONAL"),
            }
        }
        code, out, _ = self.run_main(index)
        self.assertEqual(code, 1)
        self.assertEqual(
            out,
            [
                "FAILED 1.1.2: behavior=FAILED behaviorClose=FAILED (tern_case_1_1_2.json)",
                "FAILED 1.1.10: behavior=FAILED behaviorClose=FAILED",
                "FAILED 10.1.1: behavior=FAILED behaviorClose=FAILED",
                "autobahn: 5 cases, 1 OK, 1 INFORMATIONAL (7.1.6), 3 failed",
                "autobahn: 2 passed, 3 failed",
            ],
        )


class Completeness(RunMain):
    def test_empty_case_list_fails(self):
        code, out, _ = self.run_main({"tern": {}})
        self.assertEqual(code, 1)
        self.assertIn("MISSING: the report holds no case", out)

    def test_pattern_matching_nothing_fails(self):
        index = {"tern": {"1.1.1": entry("OK"), "2.1": entry("OK")}}
        code, out, _ = self.run_main(index, "--cases", "1.*,2.*,3.*")
        self.assertEqual(code, 1)
        self.assertEqual(out[0], "MISSING: case pattern '3.*' matched no case in the report")
        self.assertEqual(out[-1], "autobahn: 2 passed, 1 failed")

    def test_pattern_does_not_match_longer_section(self):
        # "1.*" must not be satisfied by case 10.1.1.
        code, _, _ = self.run_main({"tern": {"10.1.1": entry("OK")}}, "--cases", "1.*")
        self.assertEqual(code, 1)

    def test_all_patterns_matched_passes(self):
        index = {"tern": {"1.1.1": entry("OK"), "10.1.1": entry("OK")}}
        code, _, _ = self.run_main(index, "--cases", " 1.* , 10.* ,")
        self.assertEqual(code, 0)


class Agents(RunMain):
    def test_named_agent_is_chosen(self):
        index = {"tern": {"1.1.1": entry("OK")}, "other": {"1.1.1": entry("FAILED")}}
        code, _, _ = self.run_main(index, "--agent", "tern")
        self.assertEqual(code, 0)
        code, _, _ = self.run_main(index, "--agent", "other")
        self.assertEqual(code, 1)

    def test_several_agents_need_a_name(self):
        index = {"a": {"1.1.1": entry("OK")}, "b": {"1.1.1": entry("OK")}}
        code, _, err = self.run_main(index)
        self.assertEqual(code, 2)
        self.assertIn("several agents (a, b)", err)

    def test_unknown_agent_is_an_error(self):
        code, _, err = self.run_main({"tern": {"1.1.1": entry("OK")}}, "--agent", "x")
        self.assertEqual(code, 2)
        self.assertIn("agent 'x' not in report", err)


class MalformedReports(RunMain):
    def test_missing_file(self):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = check_report.main([os.path.join(self.dir.name, "absent.json")])
        self.assertEqual(code, 2)
        self.assertIn("cannot read report", err.getvalue())

    def test_not_json(self):
        code, _, err = self.run_main('{"tern": {"1.1.1": ')
        self.assertEqual(code, 2)
        self.assertIn("not valid JSON", err)

    def test_shape_errors(self):
        bad = [
            [],
            {},
            {"tern": []},
            {"tern": {"1.1.1": "OK"}},
            {"tern": {"1.1.1": {"behavior": "OK"}}},
            {"tern": {"1.1.1": {"behavior": "OK", "behaviorClose": None}}},
        ]
        for index in bad:
            with self.subTest(index=index):
                code, out, err = self.run_main(index)
                self.assertEqual(code, 2)
                self.assertEqual(out, [])
                self.assertIn("malformed report", err)


class SortKey(unittest.TestCase):
    def test_numeric_order(self):
        ids = ["10.1.1", "2.1", "1.1.10", "1.1.2", "9.10.1", "9.2.1"]
        ordered = sorted(ids, key=check_report.case_sort_key)
        self.assertEqual(ordered, ["1.1.2", "1.1.10", "2.1", "9.2.1", "9.10.1", "10.1.1"])

    def test_non_numeric_part_does_not_crash(self):
        ordered = sorted(["1.a", "1.2"], key=check_report.case_sort_key)
        self.assertEqual(ordered, ["1.2", "1.a"])


if __name__ == "__main__":
    unittest.main()
