import gzip
import hashlib

import pytest

from bench import data
from bench.errors import UsageError
from conftest import MIRROR, needs_mirror, write_dataset
from tasks.lm import load_corpus


@needs_mirror
def test_ptb_counts_from_mirror():
    c = load_corpus(str(MIRROR), "ptb", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"))
    assert len(c.vocab) == 10_000
    assert c.splits["train"].numel() == 929_589
    assert c.splits["valid"].numel() == 73_760
    assert c.splits["test"].numel() == 82_430
    assert int((c.splits["train"] == c.vocab["<eos>"]).sum()) == 42_068   # one <eos> per line


@needs_mirror
def test_wikitext2_counts_from_mirror():
    c = load_corpus(str(MIRROR), "wikitext-2", ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"))
    assert len(c.vocab) == 33_278
    assert c.splits["train"].numel() == 2_088_628
    assert c.splits["valid"].numel() == 217_646
    assert c.splits["test"].numel() == 245_569


@needs_mirror
def test_mirror_checksums_match_manifest():
    import bench.plugins
    bench.plugins.load_all()
    manifest = [l.split("\t") for l in (MIRROR / "MANIFEST.tsv").read_text().splitlines()[1:]]
    for dataset, fname, _, sha, _ in manifest:
        if dataset in data.DATASETS:
            assert data.DATASETS[dataset].file(fname[:-3]).gz_sha256 == sha
    for name in ("ptb", "wikitext-2"):
        assert data.verify(MIRROR, name)


def test_missing_file_names_file_and_fix(tmp_path):
    write_dataset(tmp_path, "toy", {"a.txt": "x y\n"})
    (tmp_path / "toy" / "a.txt.gz").unlink()
    with pytest.raises(UsageError, match=r"toy/a.txt\(\.gz\) not found.*make data DATASET=toy"):
        data.read_text(tmp_path, "toy", "a.txt")


def test_corrupt_file_is_rejected(tmp_path):
    write_dataset(tmp_path, "toy", {"a.txt": "x y\n"})
    (tmp_path / "toy" / "a.txt.gz").write_bytes(gzip.compress(b"x z\n", mtime=0))
    with pytest.raises(UsageError, match=r"a.txt.gz is corrupt.*delete it"):
        data.read_text(tmp_path, "toy", "a.txt")
    (tmp_path / "toy" / "a.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(UsageError, match="not a readable gzip"):
        data.read_text(tmp_path, "toy", "a.txt")


def test_plain_and_recompressed_files_are_accepted(tmp_path):
    write_dataset(tmp_path, "toy", {"a.txt": "x y\n"})
    gz = tmp_path / "toy" / "a.txt.gz"
    gz.write_bytes(gzip.compress(b"x y\n", compresslevel=1, mtime=123))   # other bytes, same content
    assert data.read_text(tmp_path, "toy", "a.txt") == "x y\n"
    gz.unlink()
    (tmp_path / "toy" / "a.txt").write_text("x y\n")
    assert data.read_text(tmp_path, "toy", "a.txt") == "x y\n"


def test_data_dir_resolution(monkeypatch, tmp_path):
    """$BENCH_DATA first, else the mirror ../shared/data beside the checkout (when it has its
    MANIFEST.tsv), else ./data in the checkout."""
    checkout = tmp_path / "work" / "checkout"
    checkout.mkdir(parents=True)
    mirror = tmp_path / "work" / "shared" / "data"
    monkeypatch.setattr(data, "REPO", checkout)
    monkeypatch.delenv("BENCH_DATA", raising=False)
    assert data.default_data_dir() == checkout / "data"                    # no mirror
    mirror.mkdir(parents=True)
    assert data.default_data_dir() == checkout / "data"                    # a mirror without its manifest
    (mirror / "MANIFEST.tsv").write_text("dataset\tfile\tbytes\tsha256\tsource\n")
    assert data.default_data_dir() == mirror
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "elsewhere"))
    assert data.default_data_dir() == tmp_path / "elsewhere"               # the environment wins
    monkeypatch.setenv("BENCH_DATA", "")
    assert data.default_data_dir() == mirror                               # empty means unset


def test_every_dataset_has_download_code_or_instructions():
    import bench.plugins
    bench.plugins.load_all()
    for spec in data.DATASETS.values():
        if spec.url.startswith("file://"):
            continue
        assert spec.url.startswith(("http://", "https://")), spec.name
        assert spec.fetch is not None or spec.note, spec.name
        for f in spec.files:
            assert len(f.sha256) == 64 and len(f.gz_sha256) in (0, 64)


def test_fetch_archive_from_local_archive(tmp_path, monkeypatch):
    """The download path, with the network replaced by a local zip (tests never go online)."""
    import zipfile
    content = b"hello world\n"
    spec = data.register_dataset(data.DatasetSpec(
        name="ziptoy", url="https://example.invalid/toy.zip",
        files=(data.DataFile("t.txt", "", hashlib.sha256(content).hexdigest()),), fetch=data.fetch_archive))
    src = tmp_path / "toy.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("toy/t.txt", content)
    monkeypatch.setattr(data, "download", lambda url, dest: src)
    data.fetch("ziptoy", tmp_path / "d")
    assert gzip.decompress((tmp_path / "d" / "ziptoy" / "t.txt.gz").read_bytes()) == content
    data.DATASETS.pop(spec.name)


def test_fetch_files_one_url_per_file(tmp_path, monkeypatch):
    """Multi30k's download path (one URL per file, some gzipped), with the network replaced."""
    import tasks.translation as tr
    served = {"a.txt": b"alpha\n", "b.txt": b"beta\n"}
    spec = data.DatasetSpec(name="perfile", url="https://example.invalid/",
                            files=tuple(data.DataFile(n, "", hashlib.sha256(c).hexdigest()) for n, c in served.items()))

    def fake_download(url, dest):
        name = url.rsplit("/", 1)[1]
        dest.write_bytes(gzip.compress(served[name[:-3]]) if name.endswith(".gz") else served[name])
        return dest
    monkeypatch.setattr(data, "download", fake_download)
    data.fetch_files(spec, tmp_path, lambda n: f"https://example.invalid/{n}" + (".gz" if n == "a.txt" else ""))
    for n, c in served.items():
        assert gzip.decompress((tmp_path / "perfile" / (n + ".gz")).read_bytes()) == c
    assert tr.multi30k_url("train.de").endswith("/raw/train.de.gz")
    assert tr.multi30k_url("train.lc.norm.tok.de").endswith("/tok/train.lc.norm.tok.de")
