"""Report statuses, their Open311 / FixMyStreet mapping and the allowed transitions.

| status            | Vietnamese               | Open311 | FixMyStreet extension         |
|-------------------|--------------------------|---------|-------------------------------|
| for_triage        | Chờ tiếp nhận            | open    | FOR_TRIAGE                    |
| investigating     | Đã tiếp nhận             | open    | INVESTIGATING                 |
| in_progress       | Đang xử lý               | open    | IN_PROGRESS                   |
| action_scheduled  | Đã lên kế hoạch          | open    | ACTION_SCHEDULED              |
| reopened          | Mở lại                   | open    | OPEN                          |
| fixed             | Đã xử lý                 | closed  | FIXED                         |
| duplicate         | Trùng lặp                | closed  | DUPLICATE                     |
| not_responsible   | Không thuộc thẩm quyền   | closed  | NOT_COUNCILS_RESPONSIBILITY   |
| no_further_action | Từ chối                  | closed  | NO_FURTHER_ACTION             |
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    FOR_TRIAGE = "for_triage"
    INVESTIGATING = "investigating"
    IN_PROGRESS = "in_progress"
    ACTION_SCHEDULED = "action_scheduled"
    REOPENED = "reopened"
    FIXED = "fixed"
    DUPLICATE = "duplicate"
    NOT_RESPONSIBLE = "not_responsible"
    NO_FURTHER_ACTION = "no_further_action"


OPEN_STATUSES: frozenset[Status] = frozenset(
    {Status.FOR_TRIAGE, Status.INVESTIGATING, Status.IN_PROGRESS, Status.ACTION_SCHEDULED, Status.REOPENED}
)
CLOSED_STATUSES: frozenset[Status] = frozenset(set(Status) - OPEN_STATUSES)

LABELS_VI: dict[Status, str] = {
    Status.FOR_TRIAGE: "Chờ tiếp nhận",
    Status.INVESTIGATING: "Đã tiếp nhận",
    Status.IN_PROGRESS: "Đang xử lý",
    Status.ACTION_SCHEDULED: "Đã lên kế hoạch",
    Status.REOPENED: "Mở lại",
    Status.FIXED: "Đã xử lý",
    Status.DUPLICATE: "Trùng lặp",
    Status.NOT_RESPONSIBLE: "Không thuộc thẩm quyền",
    Status.NO_FURTHER_ACTION: "Từ chối",
}
LABELS_EN: dict[Status, str] = {
    Status.FOR_TRIAGE: "Awaiting triage",
    Status.INVESTIGATING: "Accepted",
    Status.IN_PROGRESS: "In progress",
    Status.ACTION_SCHEDULED: "Action scheduled",
    Status.REOPENED: "Reopened",
    Status.FIXED: "Fixed",
    Status.DUPLICATE: "Duplicate",
    Status.NOT_RESPONSIBLE: "Not our responsibility",
    Status.NO_FURTHER_ACTION: "Rejected",
}

#: FixMyStreet's extended states (servicerequestupdates ``status``).
FMS_STATUS: dict[Status, str] = {
    Status.FOR_TRIAGE: "FOR_TRIAGE",
    Status.INVESTIGATING: "INVESTIGATING",
    Status.IN_PROGRESS: "IN_PROGRESS",
    Status.ACTION_SCHEDULED: "ACTION_SCHEDULED",
    Status.REOPENED: "OPEN",
    Status.FIXED: "FIXED",
    Status.DUPLICATE: "DUPLICATE",
    Status.NOT_RESPONSIBLE: "NOT_COUNCILS_RESPONSIBILITY",
    Status.NO_FURTHER_ACTION: "NO_FURTHER_ACTION",
}

_ACTIVE = {Status.IN_PROGRESS, Status.ACTION_SCHEDULED, Status.FIXED}
_CLOSING = {Status.DUPLICATE, Status.NOT_RESPONSIBLE, Status.NO_FURTHER_ACTION}

#: Which status may follow which (staff actions). Reopening is the way back from a closed status.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.FOR_TRIAGE: frozenset({Status.INVESTIGATING} | _CLOSING),
    Status.INVESTIGATING: frozenset(_ACTIVE | _CLOSING),
    Status.IN_PROGRESS: frozenset({Status.ACTION_SCHEDULED, Status.FIXED} | _CLOSING),
    Status.ACTION_SCHEDULED: frozenset({Status.IN_PROGRESS, Status.FIXED} | _CLOSING),
    Status.REOPENED: frozenset({Status.INVESTIGATING} | _ACTIVE | _CLOSING),
    Status.FIXED: frozenset({Status.REOPENED}),
    Status.DUPLICATE: frozenset({Status.REOPENED}),
    Status.NOT_RESPONSIBLE: frozenset({Status.REOPENED}),
    Status.NO_FURTHER_ACTION: frozenset({Status.REOPENED}),
}


def open311_status(status: str) -> str:
    """``open`` or ``closed`` (GeoReport v2)."""
    return "open" if Status(status) in OPEN_STATUSES else "closed"


def is_open(status: str) -> bool:
    return Status(status) in OPEN_STATUSES


def label(status: str, lang: str = "vi") -> str:
    return (LABELS_EN if lang == "en" else LABELS_VI)[Status(status)]


def allowed(current: str, target: str) -> bool:
    return Status(target) in TRANSITIONS[Status(current)]
