"""E-mail to reporters who left an address, when their report changes status.

Runs as a durable consumer of ``report.status_changed`` (once per event across workers,
retried if the mail server is down). Without ``IOC_REPORTS__SMTP_HOST`` nothing is registered.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from sqlalchemy.orm import Session

from ioc.core.events import DurableHandler, Event

from . import catalog
from .models import Report, Reporter
from .settings import ReportsSettings
from .workflow import label


def compose(settings: ReportsSettings, report: Report, to: str) -> EmailMessage:
    cat = catalog.categories().get(report.category)
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = f"[Vinh IOC] Phản ánh {report.code}: {label(report.status)}"
    link = f"{settings.public_url.rstrip('/')}/theo-doi?code={report.code}"
    msg.set_content(
        "\n".join(
            [
                "Kính gửi Quý công dân,",
                "",
                f"Phản ánh của bạn ({cat.name if cat else report.category}) nay ở trạng thái: {label(report.status)}.",
                *([f"Trả lời: {report.status_notes}"] if report.status_notes else []),
                "",
                f"Theo dõi: {link}",
                "",
                "— Trung tâm điều hành đô thị thông minh Vinh",
                "",
                f"Your report {report.code} is now: {label(report.status, 'en')}.",
            ]
        )
    )
    return msg


def handler(settings: ReportsSettings) -> DurableHandler:
    """The durable handler ``(session, event)`` sending one e-mail per status change."""

    def handle(session: Session, event: Event) -> None:
        report_id = event.payload.get("id")
        report = session.get(Report, report_id) if isinstance(report_id, int) else None
        if report is None or report.anonymous:
            return
        reporter = session.get(Reporter, report.id)
        if reporter is None or not reporter.email:
            return
        message = compose(settings, report, reporter.email)
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=20) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)

    return handle
