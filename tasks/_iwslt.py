"""Prepare IWSLT'14 German-English like fairseq's examples/translation/prepare-iwslt14.sh:

    python -m tasks._iwslt DATA_DIR                      # downloads de-en.tgz (needs internet)
    python -m tasks._iwslt DATA_DIR --archive de-en.tgz  # offline, from a local copy of the release

writes DATA_DIR/iwslt14-de-en/{train,valid,test}.{de,en}, `code` (the BPE merges) and MANIFEST.sha256.
Steps, as in fairseq's script: the WIT3 archive (canonical URL, fairseq's copy as fallback); training
talks without the <url>/<talkid>/<keywords> lines and with the <title>/<description> tags removed
(their text is kept, as is every other line); Moses tokenisation (sacremoses, escaping on, as
tokenizer.perl); Moses cleaning of the training pairs (1-175 tokens, length ratio <= 1.5);
lowercasing; valid = every 23rd training pair; test = dev2010 + TEDX dev2012 + tst2010-2012 (the
<seg> lines of the XML files, ’ as '); joint BPE with 10,000 merges (subword-nmt) learned on train.de
followed by train.en, applied to every file. Needs `pip install sacremoses subword-nmt`.

Checks. The pair counts must be fairseq's (IWSLT_COUNTS in tasks/translation.py: 160,239 / 7,283 /
6,750); otherwise nothing is written and the error says so (another release, a truncated download, a
changed tool). The task's reader checks the same counts. tests/test_iwslt.py runs this whole
preparation offline on a miniature archive in the release's layout (with its own `expected_counts`).
The manifest only detects changes to the files *after* preparation; see check_manifest.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.data import archive_members, download
from bench.errors import UsageError
from tasks.translation import IWSLT_COUNTS

URLS = ("https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz",
        "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz")
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
BPE_MERGES = 10000
LANGS = ("de", "en")


def _tools():
    try:
        from sacremoses import MosesTokenizer
        from subword_nmt.apply_bpe import BPE
        from subword_nmt.learn_bpe import learn_bpe
    except ImportError:
        raise UsageError("preparing IWSLT'14 needs sacremoses and subword-nmt: "
                         "pip install sacremoses subword-nmt") from None
    return MosesTokenizer, BPE, learn_bpe


def train_lines(text: str) -> list[str]:
    """Sentences of a train.tags file: the <url>, <talkid>, <keywords> lines dropped, the
    title/description tags removed (fairseq's grep -v / sed)."""
    out = []
    for line in text.splitlines():
        if any(tag in line for tag in ("<url>", "<talkid>", "<keywords>")):
            continue
        out.append(re.sub(r"</?(title|description)>", "", line))
    return out


def xml_segments(text: str) -> list[str]:
    """The <seg id=..> contents of an IWSLT dev/test XML file, with ’ as '."""
    segs = []
    for line in text.splitlines():
        if "<seg id" in line:
            seg = re.sub(r'<seg id="[0-9]*">\s*', "", line)
            segs.append(re.sub(r"\s*</seg>\s*", "", seg).replace("\u2019", "'"))
    return segs


def clean_pairs(src: list[str], tgt: list[str], lo=1, hi=175, ratio=1.5) -> list[tuple[str, str]]:
    """Moses clean-corpus-n: both sides lo..hi tokens and length ratio <= `ratio`."""
    keep = []
    for s, t in zip(src, tgt):
        s, t = " ".join(s.replace("|", "").split()), " ".join(t.replace("|", "").split())
        ns, nt = len(s.split()), len(t.split())
        if lo <= ns <= hi and lo <= nt <= hi and ns / nt <= ratio and nt / ns <= ratio:
            keep.append((s, t))
    return keep


def download_archive(folder: Path) -> Path:
    """de-en.tgz from the first of URLS that answers."""
    for url in URLS:
        try:
            return download(url, Path(folder) / "de-en.tgz")
        except OSError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
    raise UsageError(f"could not download IWSLT'14 de-en from any of {', '.join(URLS)}; download de-en.tgz "
                     f"by hand and pass it with --archive")


def read_release(archive: Path) -> dict[str, str]:
    """The text files of the release by base name; a UsageError names the ones missing."""
    if not Path(archive).is_file():
        raise UsageError(f"archive {archive} not found; give the path of IWSLT'14's de-en.tgz ({URLS[0]})")
    try:
        members = archive_members(Path(archive))
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise UsageError(f"{archive} is not a readable de-en.tgz ({exc}); download it again") from None
    needed = [f"train.tags.de-en.{l}" for l in LANGS] + [f"{n}.de-en.{l}.xml" for n in TEST_SETS for l in LANGS]
    missing = [n for n in needed if n not in members]
    if missing:
        raise UsageError(f"{archive} lacks {', '.join(missing)}: it is not IWSLT'14's de-en.tgz "
                         f"({URLS[0]})")
    try:
        return {n: members[n].decode("utf-8") for n in needed}
    except UnicodeDecodeError as exc:
        raise UsageError(f"{archive}: a file is not UTF-8 ({exc}); download the archive again") from None


def split_pairs(files: dict[str, str], tokenizer) -> dict[str, list[tuple[str, str]]]:
    """train/valid/test pairs, tokenised and lowercased (before BPE)."""
    tok = {l: tokenizer(lang=l) for l in LANGS}
    moses = lambda l, s: tok[l].tokenize(s, return_str=True, escape=True)
    sides = [[moses(l, s) for s in train_lines(files[f"train.tags.de-en.{l}"])] for l in LANGS]
    if len(sides[0]) != len(sides[1]):
        raise UsageError(f"train.tags.de-en.de has {len(sides[0])} sentences but train.tags.de-en.en "
                         f"{len(sides[1])}: the archive is damaged; download it again")
    pairs = [(s.lower(), t.lower()) for s, t in clean_pairs(*sides)]
    test = [[moses(l, s).lower() for name in TEST_SETS for s in xml_segments(files[f"{name}.de-en.{l}.xml"])]
            for l in LANGS]
    return {"train": [p for i, p in enumerate(pairs, 1) if i % 23],
            "valid": [p for i, p in enumerate(pairs, 1) if i % 23 == 0],
            "test": list(zip(*test))}


def prepare(data_dir: Path, archive: Path | None = None, expected_counts: dict | None = None) -> Path:
    """Prepare DATA_DIR/iwslt14-de-en from `archive` (downloaded when None). Refuses, writing
    nothing, when the pair counts differ from `expected_counts` (default fairseq's IWSLT_COUNTS)."""
    MosesTokenizer, BPE, learn_bpe = _tools()
    expected = IWSLT_COUNTS if expected_counts is None else expected_counts
    if archive is None:
        with tempfile.TemporaryDirectory() as tmp:
            files = read_release(download_archive(Path(tmp)))
    else:
        files = read_release(archive)
    splits = split_pairs(files, MosesTokenizer)
    counts = {split: len(ps) for split, ps in splits.items()}
    if counts != expected:
        raise UsageError(f"the preparation gives {counts} sentence pairs, fairseq's gives {expected}: the "
                         f"archive is another release or damaged, or sacremoses/subword-nmt behave "
                         f"differently; nothing was written")

    out = Path(data_dir) / "iwslt14-de-en"
    out.mkdir(parents=True, exist_ok=True)
    joint = "".join(p[i] + "\n" for i in range(2) for p in splits["train"])   # cat train.de train.en
    codes = io.StringIO()
    learn_bpe(io.StringIO(joint), codes, BPE_MERGES)
    (out / "code").write_text(codes.getvalue(), encoding="utf-8")
    bpe = BPE(io.StringIO(codes.getvalue()))
    manifest = []
    for split, ps in splits.items():
        for i, l in enumerate(LANGS):
            content = "".join(bpe.process_line(p[i]) + "\n" for p in ps)
            (out / f"{split}.{l}").write_text(content, encoding="utf-8")
            manifest.append(f"{hashlib.sha256(content.encode('utf-8')).hexdigest()}  {split}.{l}")
        print(f"{split}: {len(ps)} pairs")
    (out / "MANIFEST.sha256").write_text("\n".join(manifest) + "\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks._iwslt", description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path, help="writes DATA_DIR/iwslt14-de-en/")
    parser.add_argument("--archive", type=Path, help="a local de-en.tgz of the release (no download)")
    args = parser.parse_args(argv)
    try:
        print(f"prepared {prepare(args.data_dir, args.archive)}")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
