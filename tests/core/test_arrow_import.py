"""The single pyarrow import: the error without it, the allocator default with it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etlsync.core.arrow import import_pyarrow
from etlsync.core.errors import ConfigError


def test_missing_pyarrow_names_the_feature_the_fix_and_the_alternative(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"^Thing needs pyarrow: pip install "
                                          r"'etlsync\[parquet\]' \(or pyarrow\), or do X$"):
        import_pyarrow("Thing", "do X")


def _allocator_setting(env: dict[str, str]) -> str:
    code = ("import os; from etlsync.core.arrow import import_pyarrow; import_pyarrow('t'); "
            "print(os.environ['MIMALLOC_ARENA_EAGER_COMMIT'])")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_arena_commit_default_is_set_before_import_and_a_user_setting_wins() -> None:
    pytest.importorskip("pyarrow")
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ARENA_EAGER_COMMIT"}
    assert _allocator_setting(env) == "0"
    assert _allocator_setting({**env, "MIMALLOC_ARENA_EAGER_COMMIT": "1"}) == "1"
