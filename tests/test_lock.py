"""requirements.lock: complete (every declared dependency pinned exactly), consistent with
pyproject.toml, installed as locked (drift fails here), and wired into `make install`."""
import hashlib
import importlib.metadata
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bench import lockfile
from bench.errors import UsageError

REPO = lockfile.LOCK.parent
NOT_LOCKED = {"torch"}          # installed from the Makefile's $(TORCH), CPU or CUDA build


def declared() -> list[Requirement]:
    """The runtime deps and the `test` and `ray` extras of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["ray"]]


def test_lock_sha256_is_the_files_hash_and_empty_when_absent(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.0.0\n")
    assert lockfile.lock_sha256(lock) == hashlib.sha256(b"numpy==2.0.0\n").hexdigest()
    assert lockfile.lock_sha256(tmp_path / "missing.lock") == ""
    assert lockfile.lock_sha256() == hashlib.sha256(lockfile.LOCK.read_bytes()).hexdigest()


def test_pins_reads_exact_pins_and_rejects_loose_ones(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\n--find-links /x\nPyYAML==6.0.4\n    # via ray\nnumpy==2.4.6  # pinned\n")
    assert lockfile.pins(lock) == {"pyyaml": "6.0.4", "numpy": "2.4.6"}
    lock.write_text("numpy>=2\n")
    with pytest.raises(UsageError, match="not an exact pin.*make lock"):
        lockfile.pins(lock)


def test_lock_pins_every_declared_dependency_within_its_range():
    pins = lockfile.pins()
    for req in declared():
        name = canonicalize_name(req.name)
        if name in NOT_LOCKED:
            assert name not in pins, f"{name} is installed from $(TORCH) and must stay out of the lock"
            continue
        assert name in pins, f"{req} (pyproject.toml) is not pinned in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {req}: run `make lock`"
    assert not any(n.startswith("nvidia-") or n == "triton" for n in pins), "CUDA-only packages locked"


def test_installed_versions_equal_the_locks_pins():
    drift = {}
    for name, version in lockfile.pins().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "(missing)"
        if installed == "(missing)" or Version(installed) != Version(version):
            drift[name] = f"{installed}, locked {version}"
    assert not drift, f"the venv differs from requirements.lock (run `make install`): {drift}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("changed", ["requirements.lock", "pyproject.toml"])
def test_make_install_reinstalls_when_lock_or_pyproject_changes(changed, tmp_path):
    """A dry run (make -n) on an installed venv: nothing to do, unless `changed` is newer (-W)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    make = ["make", "-n", "-C", str(REPO), "install", f"VENV={venv}"]
    assert "pip install" not in subprocess.run(make, capture_output=True, text=True, check=True).stdout
    plan = subprocess.run(make + ["-W", changed], capture_output=True, text=True, check=True).stdout
    assert f"-r {lockfile.LOCK.name}" in plan and "--no-deps" in plan and " -e ." in plan
