"""The email channel: one message over SMTP per notification.

The stdlib client runs in a worker thread (it blocks) with a timeout on every socket
operation. SMTP's own answer classes decide the retry policy: a 4xx reply or no answer at all
is transient (retried through the consumer's delay tiers), a 5xx reply is permanent
(dead-lettered with the server's words).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import formataddr

from infra.messaging.errors import PermanentFailure, RetryLater
from notification_service.domain.contacts import Contact, ContactIncomplete
from notification_service.domain.model import Notification
from notification_service.settings import NotificationSettings


class EmailChannel:
    name = "email"

    def __init__(self, settings: NotificationSettings) -> None:
        if not settings.smtp_host:
            raise ValueError("EmailChannel needs NOTIFICATION_SMTP_HOST")
        self._settings = settings
        self._host = settings.smtp_host

    async def send(self, notification: Notification, contact: Contact) -> None:
        if not contact.email:
            raise ContactIncomplete(f"no email address for customer {contact.customer_id}")
        message = self._message(notification, contact.email, contact.name)
        try:
            await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPRecipientsRefused as error:
            # Judged by the mildest refusal: a recipient answered 4xx may be taken later.
            codes = [code for code, _ in error.recipients.values()]
            reason = f"recipient refused: {error.recipients}"
            raise _failure(min(codes, default=500), reason) from error
        except smtplib.SMTPResponseException as error:
            reply = error.smtp_error
            text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
            raise _failure(error.smtp_code, f"SMTP {error.smtp_code} {text}") from error
        except OSError as error:  # refused, reset, timed out, disconnected (SMTPException too)
            reason = f"SMTP server {self._host}: {type(error).__name__}: {error}"
            raise RetryLater(reason) from error

    def _message(self, notification: Notification, to: str, name: str | None) -> EmailMessage:
        settings = self._settings
        try:
            message = EmailMessage()
            message["From"] = settings.smtp_from
            message["To"] = formataddr((name or "", to))
            message["Subject"] = notification.subject
            # Stable per notification: a resend (send done, `sent` not stored) carries the
            # same Message-ID, which lets mail systems recognise the duplicate.
            domain = settings.smtp_from.rpartition("@")[2] or "localhost"
            message["Message-ID"] = f"<{uuid.uuid5(uuid.NAMESPACE_URL, notification.key)}@{domain}>"
            message["X-Notification-Id"] = notification.key
            message.set_content(notification.message)
        except (ValueError, TypeError) as error:  # e.g. a line break in an address
            raise PermanentFailure(f"cannot build the email: {error}") from error
        return message

    def _deliver(self, message: EmailMessage) -> None:
        settings = self._settings
        with smtplib.SMTP(self._host, settings.smtp_port, timeout=settings.smtp_timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                secret = settings.smtp_password
                smtp.login(settings.smtp_username, secret.get_secret_value() if secret else "")
            smtp.send_message(message)


def _failure(code: int, reason: str) -> Exception:
    return PermanentFailure(reason) if code >= 500 else RetryLater(reason)
