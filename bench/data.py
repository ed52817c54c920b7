"""Data access: a data directory laid out like the shared mirror, sha256-verified reads, downloads.

Layout: `<data_dir>/<dataset>/<file>` where each file is stored gzip-compressed (`<file>.gz`, as in
the mirror) or plain. A `.gz` file is accepted when the sha256 of the stored bytes or of its
decompressed content matches; a plain file when its content matches. Datasets are declared by the
task plugins with `register_dataset`; `fetch` downloads them from their canonical URLs (for users
with internet; never called by the tests).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DataFile:
    name: str            # file name without .gz, e.g. "ptb.train.txt"
    gz_sha256: str       # of the mirror's gzip file
    sha256: str          # of the decompressed content


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[DataFile, ...]
    url: str
    fetch: Callable[["DatasetSpec", Path], None] | None = None  # download into <dir>/<name>/
    note: str = ""

    def file(self, name: str) -> DataFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no file {name!r}")


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS and DATASETS[spec.name] != spec:
        raise ValueError(f"duplicate dataset name {spec.name!r}")
    DATASETS[spec.name] = spec
    return spec


def default_data_dir() -> Path:
    """$BENCH_DATA, else the shared mirror beside the checkout, else ./data."""
    env = os.environ.get("BENCH_DATA")
    if env:
        return Path(env)
    mirror = REPO.parent / "shared" / "data"
    if (mirror / "MANIFEST.tsv").exists():
        return mirror
    return REPO / "data"


def _sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


_VERIFIED: dict[tuple, str] = {}


def read_text(data_dir: Path, dataset: str, name: str) -> str:
    """The verified text of one data file, or a UsageError saying what is wrong and how to fix it."""
    spec = DATASETS[dataset]
    entry = spec.file(name)
    folder = Path(data_dir) / dataset
    gz, plain = folder / (name + ".gz"), folder / name
    path = gz if gz.exists() else plain if plain.exists() else None
    fix = (f"run `make data DATASET={dataset}` to download it from {spec.url}, or point DATA=/path "
           f"to a mirror laid out like ../shared/data (<dir>/{dataset}/{name}.gz)")
    if path is None:
        raise UsageError(f"data file {dataset}/{name}(.gz) not found in {Path(data_dir).resolve()}; {fix}")
    raw = path.read_bytes()
    key = (str(path.resolve()), len(raw), os.stat(path).st_mtime_ns)
    try:
        content = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise UsageError(f"data file {path} is not a readable gzip file ({exc}); delete it and {fix}") from None
    if _VERIFIED.get(key) != entry.sha256:
        ok = _sha256_bytes(content) == entry.sha256 or (path.suffix == ".gz" and _sha256_bytes(raw) == entry.gz_sha256)
        if not ok:
            raise UsageError(f"data file {path} is corrupt: sha256 {_sha256_bytes(content)} of its content "
                             f"does not match the expected {entry.sha256}; delete it and {fix}")
        _VERIFIED[key] = entry.sha256
    return content.decode("utf-8")


def verify(data_dir: Path, dataset: str) -> list[str]:
    """Verify every file of a dataset; return the names checked."""
    spec = DATASETS[dataset]
    for f in spec.files:
        read_text(data_dir, dataset, f.name)
    return [f.name for f in spec.files]


# --- downloads (for users with internet; the tests never call these) -------------------------

def download(url: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as exc:           # URLError, timeouts, refused connections, no route
        reason = getattr(exc, "reason", None) or exc
        raise UsageError(f"cannot download {url} ({reason}); check the network, or copy the dataset's "
                         f"files into the data directory by hand (see its SOURCE.md / `make list`)") from None
    return dest


def write_gz(path: Path, content: bytes) -> None:
    """Store like the mirror: gzip, no name or time in the header; atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
        g.write(content)
    os.replace(tmp, path)


def archive_members(archive: Path) -> dict[str, bytes]:
    """All regular files of a .zip or .tar(.gz) archive, by their base name."""
    out = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and "__MACOSX" not in info.filename:
                    out[Path(info.filename).name] = z.read(info)
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile():
                    out[Path(m.name).name] = t.extractfile(m).read()
    return out


def fetch_archive(spec: DatasetSpec, data_dir: Path, rename: dict[str, str] | None = None) -> None:
    """Download `spec.url`, pick the dataset's files out of it, verify and store them as .gz."""
    rename = rename or {}
    with tempfile.TemporaryDirectory() as tmp:
        members = archive_members(download(spec.url, Path(tmp) / "archive"))
        for f in spec.files:
            src = rename.get(f.name, f.name)
            if src not in members:
                raise UsageError(f"{spec.url} has no file {src}; download it by hand into {data_dir}/{spec.name}/")
            content = members[src]
            if src.endswith(".gz") and not f.name.endswith(".gz"):
                content = gzip.decompress(content)
            if _sha256_bytes(content) != f.sha256:
                raise UsageError(f"downloaded {src} has sha256 {_sha256_bytes(content)}, expected {f.sha256}")
            write_gz(Path(data_dir) / spec.name / (f.name + ".gz"), content)


def fetch_files(spec: DatasetSpec, data_dir: Path, url_of: Callable[[str], str]) -> None:
    """Download each file from its own URL (`url_of(name)`; a `.gz` URL is decompressed), verify
    it and store it as .gz."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in spec.files:
            url = url_of(f.name)
            content = download(url, Path(tmp) / "file").read_bytes()
            if url.endswith(".gz"):
                content = gzip.decompress(content)
            if _sha256_bytes(content) != f.sha256:
                raise UsageError(f"downloaded {url} has sha256 {_sha256_bytes(content)}, expected {f.sha256}")
            write_gz(Path(data_dir) / spec.name / (f.name + ".gz"), content)


def fetch(dataset: str, data_dir: Path) -> None:
    spec = DATASETS[dataset]
    try:
        verify(data_dir, dataset)
        print(f"{dataset}: all {len(spec.files)} files present and verified in {data_dir}")
        return
    except UsageError:
        pass
    if spec.fetch is None:
        raise UsageError(f"{dataset} cannot be downloaded automatically: {spec.note}")
    spec.fetch(spec, Path(data_dir))
    verify(data_dir, dataset)
    print(f"{dataset}: downloaded and verified into {data_dir}/{dataset}")
