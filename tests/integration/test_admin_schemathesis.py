"""Schemathesis against the running admin API, driven by gateway/admin/openapi.yaml: no
request it generates may cause a 500, an undocumented status or content type, a
response that breaks its schema, an unauthenticated success, or a success for
data the document says is invalid.

`positive_data_acceptance` is left out: some valid-looking requests are refused
on purpose for reasons a static document cannot state (categories come from
consent.yaml, /v1/trace wants exactly one of its parameters, ids must exist).
The seed is fixed so that a run is repeatable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.admin import TOKEN, admin_section
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.net import free_port, wait_listening
from tests.fixtures.sink import Sink


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    sink = Sink().start()
    port = free_port()
    config = write_config(tmp_path, sink.port, extra=admin_section(
        tmp_path, port=port, extra="correlation_headers: [X-Booking-Id]\n"
                                   "unsubscribe_limit: {burst: 1000000}\n"))
    gw = GatewayProcess(config).start()
    try:
        wait_listening(port)
        st = Path(sys.executable).with_name("st")
        run = subprocess.run(
            [str(st), "run", f"http://127.0.0.1:{port}/openapi.json",
             "-H", f"Authorization: Bearer {TOKEN}", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "--max-examples", "30",
             "--seed", "20261123", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        assert "Tested: 25" in run.stdout, run.stdout[-3000:]
        assert "Traceback" not in gw.output()
    finally:
        gw.stop_hard()
        sink.stop()
