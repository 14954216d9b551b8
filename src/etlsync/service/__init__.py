"""``etlsync serve``: a service running a project's jobs on schedules, triggers and
dependencies, with a task queue, run history, alerts, rollback and high availability
(docs/serve.md). Core never imports this package.

>>> from etlsync.service import Service, load_project
>>> service = Service(load_project("shop/"))
>>> await service.start()
>>> run = await service.trigger("orders", params={"day": "2026-12-01"})
>>> await service.stop()
"""

from etlsync.service.alerts import Alert, EmailChannel, WebhookChannel
from etlsync.service.clock import Clock, ManualClock, SystemClock
from etlsync.service.events import ServiceEvent
from etlsync.service.project import JobEntry, Project, load_project
from etlsync.service.rollback import RollbackRefused, RollbackResult, rollback
from etlsync.service.schedule import Cron, Fire, Interval, Misfire, due_fires
from etlsync.service.service import AnotherInstance, JobInfo, Service
from etlsync.service.state import LogLine, RunRecord, RunStatus, StateStore, open_state

__all__ = [
    "Alert", "AnotherInstance", "Clock", "Cron", "EmailChannel", "Fire", "Interval", "JobEntry",
    "JobInfo", "LogLine", "ManualClock", "Misfire", "Project", "RollbackRefused",
    "RollbackResult", "RunRecord", "RunStatus", "Service", "ServiceEvent", "StateStore",
    "SystemClock", "WebhookChannel", "due_fires", "load_project", "open_state", "rollback",
]
