"""The `webhooks:` section of config.yaml → WebhookConfig, with file:line:col errors.

Security: the signing secret comes from a file or the environment, never from
config.yaml itself, and is wrapped in `Secret` (its repr is '***').
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.core.secret_files import SecretFileError, read_text_secret
from gateway.core.yamlnodes import Section
from gateway.model import EventType, Secret

__all__ = ["EVENT_NAMES", "MIN_SECRET_LENGTH", "WebhookConfig", "parse_webhooks"]

# Every event type a filter may name: today's EventType, plus the ones the bounce
# and unsubscribe handling record (a filter naming them is valid before they occur).
EVENT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    [t.value for t in EventType] + ["complained", "unsubscribed", "suppressed"]))
# What apps hear about by default: what happened to their mail, not intake's bookkeeping.
DEFAULT_EVENTS = ("delivered", "deferred", "bounced", "soft_bounced", "expired", "complained",
                  "unsubscribed", "suppressed", "dropped")
MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class WebhookConfig:
    name: str  # the outbox cursor's key (renaming starts afresh); default: the URL's host+path
    url: str
    secret: Secret
    events: tuple[str, ...] = DEFAULT_EVENTS  # event types sent
    categories: tuple[str, ...] = ()  # empty: every category (and events without one)
    timeout: float = 10.0  # one POST, connect to response
    batch_size: int = 100  # events per POST at most
    poll_interval: float = 1.0  # how often the outbox looks for new events
    retry_initial: float = 1.0  # first wait after a failed POST; doubles each time
    retry_max: float = 600.0  # longest wait between tries
    # CA bundle for an https receiver's certificate; None: the system's trust store.
    # Certificates are always checked.
    ca_file: Path | None = None

    def wants(self, event_type: str, category: str | None) -> bool:
        if event_type not in self.events:
            return False
        return not self.categories or category in self.categories


def parse_webhooks(root: Section, base: Path) -> tuple[WebhookConfig, ...]:
    out = [_webhook(sec, base) for sec in root.sections("webhooks")]
    names = [w.name for w in out]
    for name in sorted({n for n in names if names.count(n) > 1}):
        root.error("webhooks", f"webhook name '{name}' is used twice")
    return tuple(out)


def _webhook(sec: Section, base: Path) -> WebhookConfig:
    url = sec.get_str("url", "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        sec.error("url" if sec.has("url") else None,
                  f"'{sec.where}.url' must be an http:// or https:// URL")
    events = _names(sec, "events", EVENT_NAMES) or DEFAULT_EVENTS
    retry_initial = sec.duration("retry_initial", 1.0)
    out = WebhookConfig(
        # Not the whole URL: a token in its query string must not reach logs and headers.
        name=sec.get_str("name", f"{parts.hostname or ''}{parts.path}"),
        url=url,
        secret=_secret(sec, base),
        events=events,
        categories=_names(sec, "categories", ()),
        timeout=sec.duration("timeout", 10.0),
        batch_size=sec.get_int("batch_size", 100, 1, 1000),
        poll_interval=sec.duration("poll_interval", 1.0),
        retry_initial=retry_initial,
        retry_max=max(retry_initial, sec.duration("retry_max", 600.0)),
        ca_file=_ca_file(sec, base),
    )
    if out.timeout <= 0:
        sec.error("timeout", f"'{sec.where}.timeout' must be more than 0")
    if out.poll_interval <= 0:
        sec.error("poll_interval", f"'{sec.where}.poll_interval' must be more than 0")
    sec.done()
    return out


def _ca_file(sec: Section, base: Path) -> Path | None:
    text = sec.opt_str("ca_file")
    if text is None:
        return None
    path = base / text
    if not path.is_file():
        sec.error("ca_file", f"'{text}': no such file")
    return path


def _names(sec: Section, key: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for text, node in sec.str_list(key):
        if choices and text not in choices:
            sec.problems.add(sec.file, node, f"'{sec.where}.{key}': unknown event type "
                             f"'{text}' (one of: {', '.join(choices)})")
            continue
        out.append(text)
    return tuple(out)


def _secret(sec: Section, base: Path) -> Secret:
    """From `secret_file` or `secret_env`; an inline `secret:` is refused."""
    value = ""
    if sec.has("secret"):
        sec.value_node("secret")
        sec.error("secret", "put the webhook secret in a file ('secret_file') or the "
                  "environment ('secret_env'), not in config.yaml")
        return Secret("")
    file_name = sec.opt_str("secret_file")
    env_name = sec.opt_str("secret_env")
    if file_name:
        try:
            value = read_text_secret(base / file_name, what="webhook secret")
        except SecretFileError as exc:
            sec.error("secret_file", str(exc))
            return Secret("")
    elif env_name:
        env_value = os.environ.get(env_name)
        if env_value is None:
            sec.error("secret_env", f"environment variable {env_name} is not set")
            return Secret("")
        value = env_value
    else:
        sec.error(None, f"'{sec.where}' needs 'secret_file' or 'secret_env' (the signing key)")
        return Secret("")
    if len(value) < MIN_SECRET_LENGTH:
        sec.error("secret_file" if file_name else "secret_env",
                  f"the webhook secret must be at least {MIN_SECRET_LENGTH} characters")
    return Secret(value)
