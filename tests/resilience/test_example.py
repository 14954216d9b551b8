"""The documented example runs and does what docs/concepts/resilience.md says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dead_letter_example(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "resilience_dead_letters.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["status"] == "completed"
    assert result["dead_lettered"] == 44 and result["replayed"] == 44
    assert result["rows_written"] == 2000 and result["still_pending"] == 0
    assert result["retries"] > 0
    assert "constraint failed" in result["example_error"]
    lines = (tmp_path / "dead_letters.jsonl").read_text().splitlines()
    assert len(lines) == 44 and json.loads(lines[0])["stage"] == "sink:sqlite"
