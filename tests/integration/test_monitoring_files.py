"""deploy/: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), and the rules and the Grafana dashboard only name
metrics that a running gateway exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.metrics import scrape
from tests.fixtures.sink import Sink

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "smtp-gateway.json"
_NAME = re.compile(r"\bsmtp_gateway_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "gauge": ("",),
             "histogram": ("_bucket", "_count", "_sum")}


def promtool(*args: str) -> str:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          cwd=RULES.parent, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    assert "SUCCESS: 10 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_the_operators_asked_for_is_there_and_tested() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "SmtpGatewayDeliveryFailureRateHigh", "SmtpGatewayIntakeLatencyHigh",
        "SmtpGatewayQueueBacklog", "SmtpGatewayTransactionalMailStuck",
        "SmtpGatewayBounceRateHigh", "SmtpGatewayComplaintRateHigh",
        "SmtpGatewayAllSmarthostsOpen", "SmtpGatewayReloadFailed",
        "SmtpGatewaySenderBlocked", "SmtpGatewaySenderFaultsRising"}
    tests = yaml.safe_load((RULES.parent / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"]
             if case["exp_alerts"]}
    quiet = {case["alertname"] for t in tests for case in t["alert_rule_test"]
             if not case["exp_alerts"]}
    assert fired == names and quiet == names  # each fires once and stays quiet once


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    return exprs


async def test_rules_and_dashboard_name_only_exposed_metrics(tmp_path: Path) -> None:
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)):
            text = scrape().text  # a running gateway: the queue and breaker gauges too
    finally:
        sink.stop()
    exposed = set()
    families = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = family.removesuffix("_total")
        families.add(base)
        exposed.update(base + suffix for suffix in _SUFFIXES[kind])
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {name for expr in [*dashboard_exprs(), *(r["expr"] for r in rules)]
            for name in _NAME.findall(expr)}
    assert used, "no metric names found"
    assert used <= exposed, f"not exposed: {sorted(used - exposed)}"
    # And the other way: every metric has a place on the dashboard.
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    missing = families - shown
    assert not missing, f"not on the dashboard: {sorted(missing)}"
