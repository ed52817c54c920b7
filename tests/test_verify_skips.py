"""The test summary counts CUDA-only skips and names every other one (tests/conftest.py)."""
from pathlib import Path

pytest_plugins = ["pytester"]
CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


def test_skips_are_counted_by_reason_and_an_unjustified_one_fails_strict_runs(pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x='''
import pytest
@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu(): pass
@pytest.mark.skipif(True, reason="root ignores file permissions")
def test_perms(): pass
def test_dep(): pytest.importorskip("no_such_module_for_this_test")
def test_ok(): pass
''')
    monkeypatch.delenv("BENCH_STRICT_SKIPS", raising=False)
    res = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    assert res.ret == 0
    res.stdout.fnmatch_lines(["*skips by reason*", "1 skipped: CUDA-only (no CUDA device here)",
                              "1 skipped, not CUDA: test_x.py::test_perms: root ignores file permissions (justified: *",
                              "1 skipped, not CUDA, UNJUSTIFIED: test_x.py::test_dep: could not import *"])
    monkeypatch.setenv("BENCH_STRICT_SKIPS", "1")
    assert pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider").ret == 1
