"""Download and prepare IWSLT'14 German-English like fairseq's examples/translation/prepare-iwslt14.sh:

    python -m tasks._iwslt DATA_DIR      # writes DATA_DIR/iwslt14-de-en/{train,valid,test}.{de,en}

Steps (for users with internet; the tests never call this): download the WIT3 archive (canonical URL,
fairseq's copy as fallback); training talks without the <url>/<talkid>/<keywords> lines and the
<title>/<description> tags; Moses tokenisation (sacremoses, escaping on, as tokenizer.perl); Moses
cleaning of the training pairs (1-175 tokens, length ratio <= 1.5); lowercasing; valid = every 23rd
training pair; test = dev2010 + TEDX dev2012 + tst2010-2012 (segments of the XML files); joint BPE
with 10,000 merges (subword-nmt) learned on train, applied to every file. Expected sizes 160,239 /
7,283 / 6,750 pairs. A MANIFEST.sha256 of the written files is added; the task verifies it when present.
Needs `pip install sacremoses subword-nmt`.
"""
from __future__ import annotations

import hashlib
import io
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from bench.data import download
from bench.errors import UsageError

URLS = ("https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz",
        "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz")
TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010",
             "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
BPE_MERGES = 10000
EXPECTED = dict(train=160239, valid=7283, test=6750)


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
    """Sentences of a train.tags file: metadata lines dropped, title/description tags removed."""
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


def fetch_archive_members() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        for url in URLS:
            try:
                path = download(url, Path(tmp) / "de-en.tgz")
                break
            except OSError as exc:
                print(f"{url}: {exc}", file=sys.stderr)
        else:
            raise UsageError(f"could not download IWSLT'14 de-en from any of {', '.join(URLS)}")
        with tarfile.open(path) as tar:
            return {Path(m.name).name: tar.extractfile(m).read().decode("utf-8")
                    for m in tar.getmembers() if m.isfile()}


def prepare(data_dir: Path) -> Path:
    MosesTokenizer, BPE, learn_bpe = _tools()
    files = fetch_archive_members()
    tok = {l: MosesTokenizer(lang=l) for l in ("de", "en")}
    norm = lambda l, s: tok[l].tokenize(s, return_str=True, escape=True).lower()
    sides = {l: [tok[l].tokenize(s, return_str=True, escape=True) for s in train_lines(files[f"train.tags.de-en.{l}"])]
             for l in ("de", "en")}
    pairs = [(s.lower(), t.lower()) for s, t in clean_pairs(sides["de"], sides["en"])]
    splits = {"train": [p for i, p in enumerate(pairs, 1) if i % 23],
              "valid": [p for i, p in enumerate(pairs, 1) if i % 23 == 0]}
    test = {l: [norm(l, s) for name in TEST_SETS for s in xml_segments(files[f"{name}.de-en.{l}.xml"])]
            for l in ("de", "en")}
    splits["test"] = list(zip(test["de"], test["en"]))

    out = Path(data_dir) / "iwslt14-de-en"
    out.mkdir(parents=True, exist_ok=True)
    joint = "\n".join(s for p in splits["train"] for s in p) + "\n"
    codes = io.StringIO()
    learn_bpe(io.StringIO(joint), codes, BPE_MERGES)
    codes.seek(0)
    (out / "code").write_text(codes.getvalue(), encoding="utf-8")
    bpe = BPE(io.StringIO(codes.getvalue()))
    manifest = []
    for split, ps in splits.items():
        for i, l in enumerate(("de", "en")):
            content = "".join(bpe.process_line(p[i]) + "\n" for p in ps)
            (out / f"{split}.{l}").write_text(content, encoding="utf-8")
            manifest.append(f"{hashlib.sha256(content.encode('utf-8')).hexdigest()}  {split}.{l}")
        note = "" if len(ps) == EXPECTED[split] else f" (fairseq's preparation gives {EXPECTED[split]})"
        print(f"{split}: {len(ps)} pairs{note}")
    (out / "MANIFEST.sha256").write_text("\n".join(manifest) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tasks._iwslt DATA_DIR")
    try:
        print(f"prepared {prepare(Path(sys.argv[1]))}")
    except UsageError as exc:
        sys.exit(f"error: {exc}")
