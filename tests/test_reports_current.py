"""The committed leaderboard is what `make leaderboard` makes of the committed registry: rows that
landed without regenerating reports/ fail here (fix: `make leaderboard`, commit reports/). Both sides
are read from HEAD (`git archive`, `git show`), so uncommitted rows in a working tree do not count."""
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from bench import leaderboard

REPO = Path(__file__).resolve().parents[1]


def git(*args) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"needs a git checkout with a commit: git {' '.join(args)}: {exc}")


def test_committed_leaderboard_is_regenerated_from_the_committed_registry(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", "HEAD", "registry"))) as tar:
        tar.extractall(tmp_path, filter="data")
    if not any((tmp_path / "registry").rglob("*.parquet")):
        pytest.skip("HEAD has no registry rows")
    committed = git("show", "HEAD:reports/LEADERBOARD.md").decode("utf-8")
    fresh = leaderboard.write(tmp_path / "registry", tmp_path / "LEADERBOARD.md").read_text(encoding="utf-8")
    if fresh != committed:
        old = set(committed.splitlines())
        changed = [line for line in fresh.splitlines() if line not in old]
        pytest.fail("reports/LEADERBOARD.md at HEAD is not what `make leaderboard` makes of HEAD's registry/ "
                    f"({len(changed)} line(s) differ, first: {changed[:1]}): run `make leaderboard` and "
                    "commit reports/ with the rows")
