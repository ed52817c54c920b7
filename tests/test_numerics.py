"""CPU numerics are fixed before torch loads, and a row records the mode that really ran."""
import os
import subprocess
import sys

from conftest import REPO

PROBE = ("import bench, os, torch; from bench import numerics; "
         "print(numerics.effective(), torch.backends.cpu.get_cpu_capability(), os.environ.get('MKL_CBWR'))")


def run(env_changes: dict) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env.update(env_changes)
    p = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_portable_is_the_default_and_sets_the_libraries_before_torch_loads():
    assert run({"BENCH_NUMERICS": ""}) == ["portable", "DEFAULT", "COMPATIBLE"]


def test_native_removes_portable_settings_inherited_from_a_portable_parent():
    """A campaign (portable by default) starts native runs: they must not inherit MKL_CBWR etc."""
    from bench.numerics import PORTABLE_ENV
    effective, capability, mkl = run({"BENCH_NUMERICS": "native", **PORTABLE_ENV})
    assert effective == "native" and capability != "DEFAULT" and mkl == "None"


def test_a_row_records_what_ran_not_what_was_asked():
    """torch ran kernels before bench set the environment: the portable request cannot take effect
    (the CPU capability is fixed at first use), and the mode says so."""
    probe = ("import torch; torch.backends.cpu.get_cpu_capability(); torch.ones(8) @ torch.ones(8); "
             "import bench; from bench import numerics; print(numerics.effective())")
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    p = subprocess.run([sys.executable, "-c", probe], env=dict(env, BENCH_NUMERICS="portable"), cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "native" and "rows record native" in p.stderr
