"""email notifier: text + HTML mail over SMTP with STARTTLS or implicit TLS, verified."""

from __future__ import annotations

import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerts.message import DeliveryError, Notification
from daemon.types import given_secret

# A Message-ID as linkwatch makes them; a stored reference of any other shape is ignored
# rather than written into a header.
MESSAGE_ID = re.compile(r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+>")
# References name the thread's first mails; a grouped mail can belong to several threads.
MAX_REFERENCES = 20


class EmailSettings(BaseModel):
    """Settings of an `email` notifier."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["email"]
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    recipients: list[str] = Field(min_length=1, max_length=100)
    timeout: float = Field(
        default=15.0, gt=0, le=60, allow_inf_nan=False, description="seconds, at most 60"
    )
    ca_file: Path | None = Field(default=None, description="extra CA bundle to trust")

    @field_validator("*")
    @classmethod
    def _secret_given(cls, value: Any) -> Any:
        return given_secret(value)

    @model_validator(mode="after")
    def _login_needs_tls(self) -> EmailSettings:
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if self.password is not None and self.security == "none":
            raise ValueError(
                'a password would travel unencrypted: use security = "starttls" or "ssl"'
            )
        return self


class EmailNotifier:
    """Sends each notification as a text + HTML e-mail, in the thread of its alerts."""

    # The mail telling an alert fired answers with its Message-ID as the thread reference;
    # later mails of the alert carry In-Reply-To (the first threaded alert's reference) and
    # References (every alert's), under the alert's subject with "Re: ". A mail telling
    # any alert newly firing (or a test) is never a reply: it starts a thread, under a
    # subject naming the site, the strongest severity and the alerts.

    kind = "email"
    Settings = EmailSettings

    def __init__(self, name: str, settings: EmailSettings) -> None:
        self.name = name
        self.settings = settings

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.settings.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.settings.ca_file))
        return ctx

    def _message_id(self, notification: Notification) -> str:
        """The mail's Message-ID, the same for every try of one outbox row."""
        # Derived from the outbox key, a retry (to greylisted recipients, or after a lost
        # answer) is the same mail, which mail systems recognise, and the thread reference
        # is one every recipient holds.
        domain = self.settings.sender.rpartition("@")[2] or "linkwatch.invalid"
        domain = re.sub(r"[^A-Za-z0-9.-]", "", domain) or "linkwatch.invalid"
        if not notification.key:
            return make_msgid(domain=domain)
        digest = hashlib.sha256(f"{self.name}\0{notification.key}".encode()).hexdigest()[:32]
        return f"<linkwatch.{digest}@{domain}>"

    def build(self, notification: Notification) -> EmailMessage:
        """The e-mail for one notification."""
        # Imported when sending: loading the settings (every command does) must not.
        from alerts.render import alert_subject, render_html, render_text, subject

        mail = EmailMessage()
        # A mail telling an alert newly firing starts a thread of its own (as a Slack post
        # does): as a reply in an older alert's thread, under that alert's subject, the new
        # alert would go unseen and its follow-ups would thread under the old one.
        threaded = [
            (msg, ref)
            for msg in notification.alerts
            if (ref := notification.threads.get(msg.fingerprint)) and MESSAGE_ID.fullmatch(ref)
        ]
        references = list(dict.fromkeys(ref for _, ref in threaded))[:MAX_REFERENCES]
        if threaded and not notification.starts_thread:
            first, parent = threaded[0]
            mail["Subject"] = "Re: " + alert_subject(first)
            mail["In-Reply-To"] = parent
            mail["References"] = " ".join(references)
        else:
            mail["Subject"] = subject(notification)
        mail["From"] = self.settings.sender
        mail["To"] = ", ".join(self.settings.recipients)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = self._message_id(notification)
        mail.set_content(render_text(notification))
        mail.add_alternative(render_html(notification), subtype="html")
        return mail

    def send(self, notification: Notification) -> str:
        """Deliver the mail and answer its Message-ID, or raise DeliveryError."""
        s = self.settings
        mail = self.build(notification)
        recipients = list(notification.recipients or s.recipients)
        try:
            smtp: smtplib.SMTP
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                smtp.ehlo()
                if s.security == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if s.username is not None and s.password is not None:
                    smtp.login(s.username, s.password.get_secret_value())
                refused = smtp.send_message(mail, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients  # every one of them
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"smtp {s.host}:{s.port}: {exc.smtp_code} {exc.smtp_error!r}",
                retryable=400 <= exc.smtp_code < 500,
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"smtp {s.host}:{s.port}: {exc}", retryable=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp {s.host}:{s.port}: {exc}") from exc
        if refused:
            raise _refusal(
                f"smtp {s.host}:{s.port}", refused, delivered=len(refused) < len(recipients)
            )
        return str(mail["Message-ID"])


def _refusal(
    where: str, refused: dict[str, tuple[int, bytes]], *, delivered: bool
) -> DeliveryError:
    """Per recipient: 4xx (greylisting, a full mailbox) is tried again, 5xx is final."""
    later = tuple(r for r, (code, _) in refused.items() if 400 <= code < 500)
    detail = ", ".join(
        f"{r}: {code} {text.decode(errors='replace')}" for r, (code, text) in refused.items()
    )
    return DeliveryError(
        f"{where}: {'some recipients' if delivered else 'recipients'} refused: {detail}",
        retryable=bool(later),
        retry_recipients=later,
    )
