"""The languages' own formatters, where one is installed: gofmt for Go, prettier for
JavaScript (``ETLSYNC_PRETTIER`` or ``prettier`` on PATH). Java and Python code is written
in its formatted shape (no Java formatter is packaged for this machine)."""

from __future__ import annotations

import os
import shutil
import subprocess

from etlsync.codegen.model import CodegenError


def formatter(lang: str) -> list[str] | None:
    """The formatter command for ``lang`` (reads stdin, writes stdout), or ``None``."""
    if lang == "go":
        gofmt = shutil.which("gofmt")
        return [gofmt] if gofmt else None
    if lang == "node":
        prettier = os.environ.get("ETLSYNC_PRETTIER") or shutil.which("prettier")
        return [prettier, "--stdin-filepath", "x.js"] if prettier else None
    return None


def format_files(files: dict[str, str], lang: str) -> dict[str, str]:
    """Format every file whose language has a formatter; a formatter's error is a bug in the
    generator and says so."""
    cmd = formatter(lang)
    if cmd is None:
        return files
    out = {}
    for name, text in files.items():
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=120,
                              check=False)
        if proc.returncode != 0:
            raise CodegenError(f"{name}: {os.path.basename(cmd[0])} rejected the generated code "
                               f"(a generator bug): {proc.stderr.strip()[:2000]}")
        out[name] = proc.stdout
    return out
