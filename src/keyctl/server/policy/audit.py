"""The audit log as the admin API reads it: append-only (the schema refuses updates and deletes), paged
by id. Events are written by each part through ``Context.audit``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyctl.server.policy.core import Context, iso
from keyctl.server.storage import Tx


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: float
    event: str
    email: str | None
    ip: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso(self.time),
            "event": self.event,
            "email": self.email,
            "ip": self.ip,
            "detail": dict(self.detail),
        }


def admin_audit(ctx: Context, after: int, limit: int) -> tuple[list[AuditEvent], int | None]:
    def work(db: Tx, now: float) -> tuple[list[AuditEvent], int | None]:
        rows = db.all("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1))
        more = len(rows) > limit
        events = [
            AuditEvent(r["id"], r["time"], r["event"], r["email"], r["ip"], json.loads(r["detail"]))
            for r in rows[:limit]
        ]
        return events, (events[-1].id if more else None)

    return ctx.run(work)
