"""Schemathesis against the running HTTP submission API, driven by gateway/api/openapi.yaml:
no request it generates may cause a 500, an undocumented status or content type, a
response that breaks its schema, an unauthenticated success, or a success for data the
document says is invalid.

`positive_data_acceptance` is left out: some valid-looking messages are refused on
purpose for reasons a static document cannot state (the sender domain must be one the
key may use, categories come from consent.yaml, an address must pass the SMTP syntax
check). The seed is fixed so that a run is repeatable.
"""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.api import add_key, api_section
from tests.fixtures.gateway import GatewayProcess, write_config
from tests.fixtures.net import free_port, wait_listening
from tests.fixtures.schemathesis import run_schemathesis
from tests.fixtures.sink import Sink


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    sink = Sink().start()
    port = free_port()
    key = add_key(tmp_path, "fuzz", domains=("*",))
    config = write_config(tmp_path, sink.port, extra=api_section(tmp_path, port=port))
    gw = GatewayProcess(config).start()
    try:
        wait_listening(port)
        out = run_schemathesis(port, key, examples=20, seed=20261207, cwd=tmp_path,
                               timeout=600)
        assert "Tested: 3" in out, out[-3000:]
        assert "Traceback" not in gw.output()
    finally:
        gw.stop_hard()
        sink.stop()
