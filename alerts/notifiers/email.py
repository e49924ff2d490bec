"""email notifier: text + HTML mail over SMTP with STARTTLS or implicit TLS, verified."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alerts.message import AlertMessage, DeliveryError
from alerts.render import render_html, render_text, title


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
    """Sends each alert as a text + HTML e-mail."""

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

    def build(self, message: AlertMessage) -> EmailMessage:
        """The e-mail for one alert."""
        mail = EmailMessage()
        mail["Subject"] = f"[linkwatch] {title(message)}"
        mail["From"] = self.settings.sender
        mail["To"] = ", ".join(self.settings.recipients)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2] or None)
        mail.set_content(render_text(message))
        mail.add_alternative(render_html(message), subtype="html")
        return mail

    def send(self, message: AlertMessage) -> None:
        """Deliver the alert; raise DeliveryError saying whether a retry can help."""
        s = self.settings
        mail = self.build(message)
        recipients = list(message.recipients or s.recipients)
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
