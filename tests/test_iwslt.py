"""IWSLT'14 end to end, offline: tasks/_iwslt.py prepares a miniature de-en.tgz laid out like the
2014 release (train.tags with their talk headers, the dev/test XML files), the task reads the result.
Needs sacremoses and subword-nmt, like the preparation itself."""
from __future__ import annotations

import subprocess
import sys
import tarfile

import pytest
import torch

pytest.importorskip("sacremoses")
pytest.importorskip("subword_nmt")

from bench import plugins, runner                                      # noqa: E402
from bench.errors import UsageError                                      # noqa: E402
from conftest import REPO                                                # noqa: E402
from tasks import _iwslt                                                 # noqa: E402
from tasks.translation import IWSLT_COUNTS, IWSLTTranslation, remove_bpe  # noqa: E402

ADJ = [("alte", "old"), ("kleine", "small"), ("rote", "red"), ("neue", "new"), ("grosse", "big")]
NOUN = [("Katze", "cat"), ("Maus", "mouse"), ("Stadt", "city"), ("Frau", "woman"), ("Zeitung", "paper"),
        ("Kirche", "church"), ("Strasse", "street")]
TALKS, BODY = 4, 20            # kept pairs per talk: 5 header lines + BODY sentences
SEGS = 3                       # segments per dev/test XML file


def body(k: int) -> tuple[str, str]:
    (ad, ae), (nd, ne), (od, oe) = ADJ[k % 5], NOUN[k % 7], NOUN[(k + 3) % 7]
    return f"Die {ad} {nd} sieht die {od}.", f"The {ae} {ne} sees the {oe}."


def expected_body(k: int) -> tuple[str, str]:
    """body(k) after Moses tokenisation and lowercasing."""
    return tuple(s[:-1].lower() + " ." for s in body(k))


def train_tags(lang: str) -> str:
    """A train.tags.de-en.<lang> file: per talk the release's header lines, then the sentences, with
    three pairs that cleaning drops (an empty one, one over 175 tokens, one with length ratio 4)."""
    i = 0 if lang == "de" else 1
    lines = []
    for t in range(TALKS):
        lines += [f"<url>http://www.ted.com/talks/lang/{lang}/speaker_{t}.html</url>",
                  "<keywords>talks, science, cities</keywords>",
                  f"<speaker>Anna Berg{t}</speaker>",
                  f"<talkid>{100 + t}</talkid>",
                  f"<title>Anna Berg{t}: {['Eine Rede', 'A talk'][i]} {t}</title>",
                  f"<description>TED Talk {['Untertitel', 'Subtitles'][i]} {t}</description>",
                  f'<reviewer href="http://www.ted.com/profiles/{t}">Rev{t}</reviewer>',
                  f'<translator href="http://www.ted.com/profiles/{t + 50}">Tra{t}</translator>']
        for k in range(BODY):
            lines.append(body(t * BODY + k)[i])
            if k == 5:
                lines += ["", " ".join(["wort"] * 180), ["eins", "one two three four"][i]]
    return "\n".join(lines) + "\n"


def seg_sentence(name: str, s: int) -> tuple[str, str]:
    return f"Es ist Satz {name} {s} hier.", f"It\u2019s \"sentence\" {name} {s} here."


def xml_file(name: str, lang: str) -> str:
    i = 0 if lang == "de" else 1
    tag = "srcset" if lang == "de" else "refset"
    segs = [f'<seg id="{s + 1}"> {seg_sentence(name, s)[i]} </seg>' for s in range(SEGS)]
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>",
                      f'<{tag} setid="{name}" srclang="german" trglang="english">',
                      '<doc docid="535" genre="lectures">', "<url>http://www.ted.com/talks/x.html</url>",
                      "<description>TED Talk Subtitles and Transcript: a talk</description>",
                      "<keywords>talks</keywords>", "<speaker>Someone</speaker>", "<talkid>535</talkid>",
                      "<title>Someone: A title</title>", *segs, "</doc>", f"</{tag}>", "</mteval>"]) + "\n"


MINI = dict(train=TALKS * (5 + BODY) - TALKS * (5 + BODY) // 23, valid=TALKS * (5 + BODY) // 23,
            test=5 * SEGS)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A miniature de-en.tgz in the layout of the release (everything under de-en/)."""
    root = tmp_path_factory.mktemp("iwslt")
    src = root / "de-en"
    src.mkdir()
    for lang in ("de", "en"):
        (src / f"train.tags.de-en.{lang}").write_text(train_tags(lang), encoding="utf-8")
        for name in _iwslt.TEST_SETS:
            (src / f"{name}.de-en.{lang}.xml").write_text(xml_file(name, lang), encoding="utf-8")
    (src / "README").write_text("IWSLT 2014 de-en\n")
    with tarfile.open(root / "de-en.tgz", "w:gz") as tar:
        tar.add(src, arcname="de-en")
    return root / "de-en.tgz"


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    data = tmp_path_factory.mktemp("prepared")
    out = _iwslt.prepare(data, archive=release, expected_counts=MINI)
    assert out == data / "iwslt14-de-en"
    files = {p.name: p.read_text(encoding="utf-8").splitlines() for p in out.iterdir()}
    return data, files


def test_miniature_preparation_follows_fairseq(prepared):
    _, files = prepared
    assert sorted(files) == ["MANIFEST.sha256", "code", "test.de", "test.en", "train.de", "train.en",
                             "valid.de", "valid.en"]
    assert {s: len(files[f"{s}.en"]) for s in MINI} == {s: len(files[f"{s}.de"]) for s in MINI} == MINI
    plain = {n: [remove_bpe(l.split()) for l in lines] for n, lines in files.items() if "." in n[1:]}
    # train.tags: <url>/<talkid>/<keywords> lines dropped; title/description text kept without the
    # tags; other lines (speaker, reviewer, translator) kept as fairseq's script keeps them
    train_en = plain["train.en"]
    assert train_en[:5] == ["&lt; speaker &gt; anna berg0 &lt; / speaker &gt;", "anna berg0 : a talk 0",
                            "ted talk subtitles 0", '&lt; reviewer href = &quot; http : / / www.ted.com / '
                            'profiles / 0 &quot; &gt; rev0 &lt; / reviewer &gt;', train_en[4]]
    assert "translator" in train_en[4] and train_en[5] == expected_body(0)[1]
    assert not any(w in l for l in train_en + plain["train.de"] for w in ("url", "talkid", "keywords"))
    assert plain["train.de"][1] == "anna berg0 : eine rede 0"
    # cleaning dropped the empty, the over-long and the ratio-4 pair; every 23rd pair is valid
    assert not any(l in ("", "one two three four") or "wort" in l for l in train_en + plain["valid.en"])
    kept = [p for t in range(TALKS) for p in [None] * 5 + [expected_body(t * BODY + k) for k in range(BODY)]]
    assert list(zip(plain["valid.de"], plain["valid.en"])) == [kept[i] for i in range(22, len(kept), 23)]
    # test: the <seg> lines of the five XML files in fairseq's order, ’ as ', Moses-escaped, lowercased
    names = [n.lower() for n in _iwslt.TEST_SETS]
    assert plain["test.en"] == [f"it &apos;s &quot; sentence &quot; {n} {s} here ." for n in names for s in range(SEGS)]
    assert plain["test.de"] == [f"es ist satz {n} {s} hier ." for n in names for s in range(SEGS)]


def test_bpe_is_joint_and_applied_to_every_file(prepared):
    _, files = prepared
    assert files["code"][0].startswith("#version:") and len(files["code"]) > 50
    tokens = {t for n in ("train.de", "train.en") for l in files[n] for t in l.split()}
    assert "katze" in tokens and "cat" in tokens      # one code learned on both sides: words of each whole
    # words unseen in train are split into BPE units with @@ continuation marks
    assert files["test.de"][0].startswith("e@@ s i@@ s@@ t s@@ at@@ z ") and all("@@" in l for l in files["test.en"])


def test_reader_checks_counts_and_manifest(prepared, tmp_path):
    data, files = prepared
    with pytest.raises(UsageError, match=f"fairseq's preparation of IWSLT'14 gives .*{IWSLT_COUNTS['train']}"):
        plugins.get_task("iwslt14-de-en").read(data)                  # the real task wants the real counts
    mini = IWSLTTranslation("iwslt-mini", "iwslt14-de-en", {}, "miniature", bpe=True, counts=MINI)
    texts = mini.read(data)
    assert texts["test"][2] == [remove_bpe(l.split()) for l in files["test.en"]]
    # a prepared file edited afterwards is caught by the manifest; without it only the counts are checked
    copy = tmp_path / "iwslt14-de-en"
    copy.mkdir()
    for name, lines in files.items():
        (copy / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (copy / "valid.en").write_text("\n".join(files["valid.en"][::-1]) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="valid.en does not match its sha256 .* changed after preparation"):
        mini.read(tmp_path)
    (copy / "MANIFEST.sha256").unlink()
    assert mini.read(tmp_path)["valid"][1] == files["valid.en"][::-1]


def test_full_size_counts_are_required_and_nothing_is_written(release, tmp_path):
    with pytest.raises(UsageError, match=r"gives \{'train': 96, 'valid': 4, 'test': 15\} sentence pairs, "
                                         r"fairseq's gives \{'train': 160239, 'valid': 7283, 'test': 6750\}"):
        _iwslt.prepare(tmp_path, archive=release)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="not found"):
        _iwslt.prepare(tmp_path, archive=tmp_path / "nope.tgz")
    broken = tmp_path / "broken.tgz"
    with tarfile.open(broken, "w:gz") as tar:
        tar.add(release.parent / "de-en" / "README", arcname="de-en/README")
    with pytest.raises(UsageError, match="lacks train.tags.de-en.de, train.tags.de-en.en, IWSLT14.TED.dev2010"):
        _iwslt.prepare(tmp_path, archive=broken)


def test_command_line_runs_offline_and_exits_2_on_wrong_counts(release, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tasks._iwslt", str(tmp_path / "d"), "--archive", str(release)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: the preparation gives" in proc.stderr and "nothing was written" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_prepared_miniature_trains_end_to_end(prepared):
    data, _ = prepared
    plugins.load_all()
    plugins.unregister("task", "iwslt-mini")
    plugins.register_task(IWSLTTranslation("iwslt-mini", "iwslt14-de-en", {}, "miniature IWSLT'14", bpe=True,
                                           defaults=dict(min_freq=1), counts=MINI))
    try:
        task, method, cfg, d = runner.prepare("iwslt-mini", "zaremba", "smoke", {}, data)
        res = runner.execute(task, method, cfg, d, 0, torch.device("cpu"), progress=False)
    finally:
        plugins.unregister("task", "iwslt-mini")
    assert res["status"] == "ok" and len(d["test"][0]) == MINI["test"]
