"""The whole corpus through the processor (as `bounce ingest --apply` runs it): no
message makes it fail; bounces about mail this gateway never sent change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.bounces.files import ingest_files
from gateway.config import load_config

DATA = Path(__file__).resolve().parents[2] / "data" / "bounces"


async def test_corpus_outcomes(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bounces.yaml").write_text("{}\n")
    path = tmp_path / "config.yaml"
    path.write_text("listeners:\n  - name: relay\n    networks: [127.0.0.0/8]\n")
    files = sorted(DATA.glob("*.eml"))
    assert len(files) >= 80
    lines = await ingest_files(load_config(path), files)
    expected = []
    for eml in files:
        bounce = json.loads(eml.with_suffix(".json").read_text())["bounce"]
        expected.append("unmatched" if bounce else "not_bounce")
    assert [line.get("outcome", line.get("error")) for line in lines] == expected
    again = await ingest_files(load_config(path), files[:3])
    assert [line["outcome"] for line in again] == ["duplicate"] * 3
