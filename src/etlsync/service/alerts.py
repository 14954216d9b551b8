"""Alerts: on failure, on a run over its time limit, on CDC lag and dead-letter rates over a
threshold, and a recovery notice; sent to webhooks (generic JSON or Slack-compatible) and by
email (SMTP), folded so a flapping job is not an alert storm.

Folding: alerts share a key per job and family (``health``: failure, timeout, recovery;
``lag``; ``dead_letters``). The first alert of a key is sent at once; later ones within
``fold`` seconds of the last sent are counted, not sent, and go out as one digest when the
fold time has passed ("4 alerts folded: 2 failure, 2 recovery; now: failing"). A recovery is
only sent for a key that alerted. The fold state is kept in the state database, so several
instances fold together.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from etlsync.core.errors import ConfigError
from etlsync.jobs.env import Redactor
from etlsync.log import get_logger
from etlsync.service.clock import Clock
from etlsync.service.project import AlertsSpec, ChannelSpec, seconds
from etlsync.service.secrets import secret
from etlsync.service.state import StateStore, iso

_FAMILY = {"failure": "health", "timeout": "health", "recovery": "health"}
log = get_logger(component="alerts")


@dataclass
class Alert:
    kind: str
    """``failure``, ``timeout``, ``recovery``, ``lag``, ``dead_letters``."""
    job: str
    message: str
    run_id: str | None = None
    at: float = 0.0
    family: str = ""
    folded: dict[str, int] = field(default_factory=dict)
    """For a digest: how many alerts of each kind were folded into it."""
    project: str = ""

    def __post_init__(self) -> None:
        self.family = self.family or _FAMILY.get(self.kind, self.kind)

    @property
    def title(self) -> str:
        head = f"[{self.project}] " if self.project else ""
        if self.folded:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self.folded.items()))
            return f"{head}{self.job}: {sum(self.folded.values())} alerts folded ({counts})"
        return f"{head}{self.job}: {self.kind}"

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "job": self.job, "kind": self.kind,
                "message": self.message, "run_id": self.run_id, "at": iso(self.at),
                "digest": bool(self.folded), "folded": self.folded}


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert) -> None: ...


class WebhookChannel:
    """POSTs the alert as JSON: the generic body (:meth:`Alert.to_dict`), or Slack's incoming
    webhook body (``text`` plus a ``section`` block) with ``slack=True``."""

    def __init__(self, url: str, *, slack: bool = False, headers: dict[str, str] | None = None,
                 timeout: float = 10.0, attempts: int = 3) -> None:
        self.url, self.slack, self.headers = url, slack, dict(headers or {})
        self.timeout, self.attempts = timeout, attempts
        self.name = "slack" if slack else "webhook"

    def body(self, alert: Alert) -> dict[str, Any]:
        if not self.slack:
            return alert.to_dict()
        emoji = ":white_check_mark:" if alert.kind == "recovery" and not alert.folded \
            else ":rotating_light:"
        text = f"{emoji} *{alert.title}*\n{alert.message}"
        if alert.run_id:
            text += f"\nrun `{alert.run_id}`"
        return {"text": f"{alert.title}: {alert.message}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}

    async def send(self, alert: Alert) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                        self.url, json=self.body(alert), headers=self.headers) as resp:
                    if resp.status < 300:
                        return
                    last = RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                    if resp.status < 500 and resp.status != 429:
                        break
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
            await asyncio.sleep(0.5 * 2 ** attempt)
        raise RuntimeError(f"{self.name} alert not delivered: {last}")


class EmailChannel:
    """Sends the alert as a plain-text email over SMTP (STARTTLS by default; ``ssl`` for
    implicit TLS on port 465; ``none`` only for a local relay), in a worker thread."""

    name = "email"

    def __init__(self, host: str, port: int | None, *, sender: str, to: Sequence[str],
                 tls: str = "starttls", user: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        if not to:
            raise ConfigError("an email channel needs 'to' (one or more addresses)")
        self.host, self.sender, self.to = host, sender, list(to)
        self.port = port or (465 if tls == "ssl" else 587 if tls == "starttls" else 25)
        self.tls, self.user, self.password, self.timeout = tls, user, password, timeout

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"etlsync: {alert.title}"
        msg["From"], msg["To"] = self.sender, ", ".join(self.to)
        lines = [alert.message, "", f"job: {alert.job}", f"kind: {alert.kind}",
                 f"at: {iso(alert.at)}"]
        if alert.run_id:
            lines.append(f"run: {alert.run_id}")
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def _send(self, msg: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.tls == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.tls == "starttls":
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(msg)

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send, self.message(alert))


def build_channels(spec: AlertsSpec | None, redact: Redactor, base: str) -> list[Channel]:
    out: list[Channel] = []
    for i, c in enumerate(spec.channels if spec else ()):
        out.append(_channel(c, f"alerts.channels[{i}]", redact, base))
    return out


def _channel(c: ChannelSpec, where: str, redact: Redactor, base: str) -> Channel:
    timeout = seconds(c.timeout, f"{where}.timeout") or 10.0
    if c.type in ("webhook", "slack"):
        url = c.url or (secret(c.url_env, None, f"{where}.url_env", base) if c.url_env else None)
        if not url:
            raise ConfigError(f"{where}: a {c.type} channel needs url or url_env")
        redact.add(url)  # webhook URLs carry their credential
        return WebhookChannel(url, slack=c.type == "slack", headers=c.headers, timeout=timeout)
    if not c.host or not c.sender:
        raise ConfigError(f"{where}: an email channel needs host and sender")
    password = secret(c.password_env, c.password_file, f"{where}.password_env", base) \
        if (c.password_env or c.password_file) else None
    if password:
        redact.add(password)
    return EmailChannel(c.host, c.port, sender=c.sender, to=c.to, tls=c.tls, user=c.user,
                        password=password, timeout=timeout)


class Alerts:
    """Decides what to send (the rules and the folding) and sends it to every channel."""

    def __init__(self, spec: AlertsSpec | None, channels: Sequence[Channel], store: StateStore,
                 clock: Clock, project: str = "") -> None:
        self.kinds = set(spec.on) if spec else set()
        self.fold = (seconds(spec.fold, "alerts.fold") or 0.0) if spec else 0.0
        self.lag = seconds(spec.lag, "alerts.lag") if spec else None
        self.dead_letter_rate = spec.dead_letter_rate if spec else None
        self.channels = list(channels)
        self.store, self.clock, self.project = store, clock, project
        self.sent: list[Alert] = []
        """Every alert sent by this process (newest last): for tests and the console."""
        self._lock = asyncio.Lock()

    def enabled(self, kind: str) -> bool:
        return bool(self.channels) and kind in self.kinds

    async def emit(self, alert: Alert) -> None:
        """Send ``alert`` now, or fold it into the next digest of its key."""
        if not self.enabled(alert.kind):
            return
        alert.at = alert.at or self.clock.now()
        alert.project = self.project
        key = f"{alert.job}:{alert.family}"
        async with self._lock:
            state = await self.store.alert_state(key) or {"last_sent": None, "folded": {},
                                                          "alerting": False}
            if alert.kind == "recovery":
                if not state["alerting"] and not state["folded"]:
                    return
                state["alerting"] = False
            else:
                state["alerting"] = True
            last = state["last_sent"]
            state["latest"] = {"kind": alert.kind, "message": alert.message,
                               "run_id": alert.run_id}
            if last is None or alert.at - last >= self.fold:
                folded, state["folded"] = state["folded"], {}
                if folded:
                    folded[alert.kind] = folded.get(alert.kind, 0) + 1
                    alert = Alert(alert.kind, alert.job, _digest_text(alert.message, state),
                                  alert.run_id, alert.at, alert.family, folded, self.project)
                state["last_sent"] = alert.at
                await self.store.set_alert_state(key, state)
                await self._send(alert)
            else:
                state["folded"][alert.kind] = state["folded"].get(alert.kind, 0) + 1
                await self.store.set_alert_state(key, state)

    async def flush_due(self) -> None:
        """Send the digests whose fold time has passed."""
        if not self.channels:
            return
        now = self.clock.now()
        async with self._lock:
            for key in await self.store.alert_keys():
                state = await self.store.alert_state(key)
                if not state or not state["folded"] or state["last_sent"] is None or \
                        now - state["last_sent"] < self.fold:
                    continue
                job, family = key.rsplit(":", 1)
                latest = state.get("latest") or {}
                alert = Alert(latest.get("kind", family), job,
                              _digest_text(latest.get("message", ""), state),
                              latest.get("run_id"), now, family, dict(state["folded"]),
                              self.project)
                state["folded"], state["last_sent"] = {}, now
                await self.store.set_alert_state(key, state)
                await self._send(alert)

    async def _send(self, alert: Alert) -> None:
        self.sent.append(alert)
        for channel in self.channels:
            try:
                await channel.send(alert)
            except Exception as exc:  # noqa: BLE001 - one channel failing never stops the others
                log.error("alert not delivered", channel=channel.name, job=alert.job,
                          error=f"{type(exc).__name__}: {exc}")


def _digest_text(message: str, state: dict[str, Any]) -> str:
    now = "failing" if state.get("alerting") else "ok"
    return f"now {now}; latest: {message}"
