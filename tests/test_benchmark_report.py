"""`make bench` rewrites BENCHMARKS.md but keeps the hand-written experiment notes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_notes_after_the_marker_are_kept():
    run = _run_module()
    previous = f"# old report\n\n| table |\n\n{run.NOTES_MARKER}\n\n## Notes\n- a finding\n"
    assert run.kept_notes(previous) == f"{run.NOTES_MARKER}\n\n## Notes\n- a finding\n"
    assert run.kept_notes("# a report without notes\n") == ""


def test_the_committed_report_has_its_notes_behind_the_marker():
    run = _run_module()
    notes = run.kept_notes((ROOT / "BENCHMARKS.md").read_text())
    assert "## Notes (2026-12-06)" in notes
    assert "4-fold cross-validation" in notes
