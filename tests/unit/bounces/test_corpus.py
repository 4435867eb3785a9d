"""The sample corpus: every tests/data/bounces/<format>_NN.eml against its .json.

One case per file (flufl.bounce's DATA table, with the expectations beside
the samples), in process, through `bounce parse --json` in process, and once
through the real command line for all files together.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.bounces import DETECTORS, parse_bytes
from gateway.bounces.classify import POLICY
from gateway.cli import main

DATA = Path(__file__).resolve().parents[2] / "data" / "bounces"
SAMPLES = sorted(DATA.glob("*.eml"))
ROOT = DATA.parents[2]

# Which detector may recognise each family of samples: a DSN-sending MTA's
# samples may be read by the Dsn detector or by its own plain-text one; the
# formats without a detector of their own are the generic detector's.
G = {"generic"}
DETECTOR_BY_FORMAT = {
    "postfix": {"dsn", "postfix"}, "sendmail": {"dsn", "sendmail"},
    "exim": {"dsn", "exim", ""}, "opensmtpd": {"dsn"}, "qmail": {"qmail"},
    "yahoo": {"yahoo"}, "aol": {"yahoo"}, "gmail": {"dsn", "gmail"},
    "exchange": {"dsn", "exchange"}, "office365": {"dsn"}, "outlook": {"dsn"},
    "outlookcom": {"dsn"}, "ses": {"dsn", "ses"}, "arf": {"arf"}, "arffbl": {"arf"},
    "autoreply": {"autoreply"}, "autoresp": {"autoreply"}, "plain": {""}, "ordinary": {""},
    "dsn": {"dsn"}, "dsnnofinal": {"dsn"}, "successdsn": {"dsn"}, "delayed": {"dsn"},
    "multircpt": {"dsn"}, "mbox": {"dsn"}, "smtpproto": {"dsn"}, "other": {"generic", "gmail"},
    "courier": {"dsn", "generic"}, "proofpoint": {"dsn"}, "yandex": {"dsn"},
    "zimbra": {"postfix"}, "vpopmail": {"qmail"}, "mailru": {"exim"},
    "gmx": {"exim"}, "webde": {"exim"}, "zoho": {"exim"},
    # free-text layouts that share Exchange's or Gmail's headline
    "hmailserver": {"exchange", "generic"}, "kerio": {"exchange", "generic"},
    "mcafee": {"gmail", "generic"}, "messagelabs": G, "netease": G, "verizon": G,
    "o365text": G, "mdn": {""}, "dmarcreport": {""}, "tlsrpt": {""},
    **{f: G for f in ("domino", "sunms", "groupwise", "mdaemon", "barracuda", "ironport",
                      "mimecast", "sophos", "trendmicro",
                      "docomo", "au", "softbank", "isoftbank")},
}


def _expected(sample: Path) -> dict[str, object]:
    return json.loads(sample.with_suffix(".json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_corpus_is_big_enough_and_complete() -> None:
    assert len(SAMPLES) >= 300
    formats = {s.stem.rsplit("_", 1)[0] for s in SAMPLES}
    assert len(formats) >= 40
    assert formats == set(DETECTOR_BY_FORMAT)
    assert all(s.with_suffix(".json").exists() for s in SAMPLES)


def test_manifest_says_where_each_sample_came_from() -> None:
    rows = [line.split("\t") for line in (DATA / "MANIFEST.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    assert sorted(r[0] for r in rows) == sorted(s.stem for s in SAMPLES)
    assert {r[1] for r in rows} == {"captured", "written"}
    captured = {r[0].rsplit("_", 1)[0] for r in rows if r[1] == "captured"}
    assert {"postfix", "exim", "opensmtpd"} <= captured


def test_corpus_covers_the_vocabulary() -> None:
    from gateway.bounces import Reason

    seen = {r["reason"] for s in SAMPLES for r in _expected(s)["recipients"]}  # type: ignore[attr-defined]
    missing = set(Reason) - {Reason(r) for r in seen} - {Reason.DELIVERED}
    assert missing == set()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_parse(sample: Path) -> None:
    report = parse_bytes(sample.read_bytes())
    assert report.to_json() == _expected(sample)
    assert report.detector in DETECTOR_BY_FORMAT[sample.stem.rsplit("_", 1)[0]]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_cli_json(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounce", "parse", "--json", str(sample)]) == 0
    assert json.loads(capsys.readouterr().out) == _expected(sample)


def test_cli_subprocess_over_whole_corpus() -> None:
    # One process for every file (FILE may repeat: one JSON document per line).
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "bounce", "parse", "--json", *map(str, SAMPLES)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    lines = out.splitlines()
    assert len(lines) == len(SAMPLES)
    for sample, line in zip(SAMPLES, lines, strict=True):
        assert json.loads(line) == _expected(sample), sample.name


def test_cli_subprocess_one_file() -> None:
    sample = DATA / "postfix_01.json"
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "bounce", "parse", "--json",
         str(sample.with_suffix(".eml"))],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out) == json.loads(sample.read_text())


NEGATIVES = [s for s in SAMPLES if s.stem.startswith("plain_")]


@pytest.mark.parametrize("sample", NEGATIVES, ids=lambda p: p.stem)
def test_no_detector_claims_plain_mail(sample: Path) -> None:
    from email.message import EmailMessage
    from email.parser import BytesParser

    msg = BytesParser(policy=POLICY).parsebytes(sample.read_bytes())
    assert isinstance(msg, EmailMessage)
    assert [d.name for d in DETECTORS if d.detect(msg) is not None] == []


def test_cli_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounce", "parse", str(DATA / "qmail_05.eml")]) == 0
    out = capsys.readouterr().out
    assert "qmail; bounce: yes" in out
    assert "gus@example.com" in out and "hal@example.com" in out


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounce", "parse", str(tmp_path / "nope.eml")]) == 1
    assert "nope.eml" in capsys.readouterr().err


def test_ingest_mbox_and_eml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box = tmp_path / "bounces.mbox"
    parts = []
    for name in ("qmail_01.eml", "autoreply_01.eml", "arf_01.eml"):
        text = (DATA / name).read_text(encoding="utf-8")
        # mbox quoting: a body line starting "From " is written ">From "
        text = "\n".join(">" + line if line.startswith("From ") else line
                         for line in text.splitlines())
        parts.append(f"From MAILER-DAEMON Wed Nov 18 09:30:05 2026\n{text}\n\n")
    box.write_text("".join(parts), encoding="utf-8")
    assert main(["bounce", "ingest", str(box), str(DATA / "plain_01.eml")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["file"], x["index"], x["detector"], x["bounce"]) for x in lines] == [
        (str(box), 0, "qmail", True), (str(box), 1, "autoreply", False),
        (str(box), 2, "arf", True), (str(DATA / "plain_01.eml"), 0, "", False)]
    assert lines[0]["recipients"] == _expected(DATA / "qmail_01.eml")["recipients"]
