"""E-mail over SMTP (stdlib ``smtplib``): STARTTLS (587, the default), implicit TLS (465,
``SMTP_SSL``) or none (local tests only); ``AUTH`` when a user is set. Certificates are
verified against the system's roots, or only ``smtp_ca_file`` when it is set.

One message per :class:`Rendered`: e-mail has no size limit worth splitting for, so only
part 0 sends — the message's body is ``rendered.plain`` (text/plain) and, when
``rendered.html`` is set, an HTML alternative — and :meth:`EmailSender.send` for a later index
is a no-op returning ``Sent(None)``.

The ``Message-ID`` is derived from the event id, the part index and the language
(``<{event id}.{index}.{language}@{domain of smtp_from}>``), the same on every retry, so a
receiver can tell a resent message from a new one.

Errors: a 4xx reply (to MAIL, RCPT — every recipient refused with 4xx — or DATA) →
transient; a 5xx reply, recipients refused with a 5xx, authentication failure, a server
without STARTTLS or AUTH, an untrusted certificate → permanent; connection errors, timeouts
and disconnects → transient. Recipients refused while others were accepted do not fail the
send (the others have the message; resending would duplicate it): they are logged.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.logging import get_logger
from quantbeat.infra.notify.base import NotifySettings, SendError, Sent, scrub, short

log = get_logger(__name__)

_ADDRESS = re.compile(r"^[^@\s,;<>\"()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_ID_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def parse_recipients(address: str | None) -> list[str]:
    """The comma-separated recipients of an e-mail target.

    Raises:
        SendError: permanent, no recipient or one that is not ``local@domain`` (named).
    """
    recipients = [item.strip() for item in (address or "").split(",") if item.strip()]
    if not recipients:
        raise SendError(f"e-mail target {address!r} names no recipient", permanent=True)
    for item in recipients:
        if not _ADDRESS.match(item):
            raise SendError(
                f"e-mail recipient {item!r} is not an address (local@domain)", permanent=True
            )
    return recipients


def message_id(envelope: Envelope, index: int, language: str, sender: str) -> str:
    """The deterministic ``Message-ID`` of part ``index`` of ``envelope`` in ``language``."""
    domain = sender.rpartition("@")[2] or "localhost"
    left = _ID_SAFE.sub("-", f"{envelope.id}.{index}.{language}")
    return f"<{left}@{_ID_SAFE.sub('-', domain)}>"


class EmailSender:
    """Sends one message per rendered event to the target's recipients."""

    def __init__(self, *, recipients: list[str], settings: NotifySettings) -> None:
        """Raises:
        SendError: permanent, no SMTP host configured, a malformed ``smtp_from``, an unknown
            ``smtp_security`` or an unreadable ``smtp_ca_file``."""
        if not settings.smtp_host:
            raise SendError("e-mail: no SMTP host configured", permanent=True)
        if not _ADDRESS.match(settings.smtp_from):
            raise SendError(
                f"e-mail sender {settings.smtp_from!r} is not an address (local@domain)",
                permanent=True,
            )
        if settings.smtp_security not in ("starttls", "tls", "none"):
            raise SendError(
                f"e-mail: SMTP security {settings.smtp_security!r} is not starttls, tls or none",
                permanent=True,
            )
        self._context: ssl.SSLContext | None = None
        if settings.smtp_security != "none":
            try:
                self._context = ssl.create_default_context(cafile=settings.smtp_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise SendError(
                    f"e-mail: the CA file {settings.smtp_ca_file!r} cannot be used: {exc}",
                    permanent=True,
                ) from None
        self._recipients = recipients
        self._settings = settings
        self._host = settings.smtp_host

    @property
    def recipients(self) -> list[str]:
        return list(self._recipients)

    def rate_keys(self) -> list[tuple[str, float]]:
        """One limiter per SMTP host, ``smtp_rate`` messages/s."""
        return [(f"smtp:{self._host}", self._settings.smtp_rate)]

    def build(self, *, rendered: Rendered, envelope: Envelope, index: int = 0) -> EmailMessage:
        """The message :meth:`send` sends (Subject, From, To, Date, Message-ID, the quantbeat
        event headers, text/plain and the optional HTML alternative)."""
        message = EmailMessage()
        message["Subject"] = " ".join(rendered.subject.split())
        message["From"] = self._settings.smtp_from
        message["To"] = ", ".join(self._recipients)
        message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        message["Message-ID"] = message_id(
            envelope, index, rendered.language, self._settings.smtp_from
        )
        message["X-Quantbeat-Event"] = f"{envelope.type} {envelope.id}"
        if envelope.simulated:
            message["X-Quantbeat-Simulated"] = "yes"
        message.set_content(rendered.plain)
        if rendered.html:
            message.add_alternative(rendered.html, subtype="html")
        return message

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """For ``index == 0``, send the whole message (``part`` is not used: the body is
        ``rendered.plain``/``rendered.html``) and return its ``Message-ID``; for a later
        index do nothing and return ``Sent(None)``.

        Raises:
            SendError: see the module docstring.
        """
        if index > 0:
            return Sent(provider_ref=None)
        message = self.build(rendered=rendered, envelope=envelope, index=index)
        try:
            refused = self._deliver(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            transient = bool(codes) and all(400 <= code < 500 for code in codes)
            detail = "; ".join(
                f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in exc.recipients.items()
            )
            raise self._error(
                f"smtp recipients refused: {detail}", not transient, min(codes, default=None)
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise self._error(
                f"smtp {exc.smtp_code}: authentication failed: {_text(exc.smtp_error)}",
                True,
                exc.smtp_code,
            ) from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data error, connect …
            code = exc.smtp_code
            raise self._error(
                f"smtp {code}: {_text(exc.smtp_error)}", not 400 <= code < 500, code
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"smtp: {exc}", True, None) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise self._error(f"smtp: disconnected: {exc}", False, None) from None
        except ssl.SSLCertVerificationError as exc:
            raise self._error(
                f"smtp: the server's certificate is not trusted: {exc.verify_message}",
                True,
                None,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, timeout, TLS, protocol
            raise self._error(f"smtp: {type(exc).__name__}: {exc}", False, None) from None
        if refused:
            log.warning(
                "notify.email.partly_refused",
                event_id=envelope.id,
                refused={rcpt: code for rcpt, (code, _) in refused.items()},
            )
        return Sent(provider_ref=str(message["Message-ID"]))

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        settings = self._settings
        host = self._host
        context = self._context
        smtp: smtplib.SMTP
        if settings.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(
                host, settings.smtp_port, timeout=settings.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(host, settings.smtp_port, timeout=settings.timeout)
        try:
            smtp.ehlo()
            if settings.smtp_security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            refused: dict[str, tuple[int, bytes]] = smtp.send_message(
                message, from_addr=settings.smtp_from, to_addrs=self._recipients
            )
        finally:
            # After a successful send, a failing QUIT must not turn it into a failure (a
            # retry would send the message twice).
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        return refused

    def _error(self, reason: str, permanent: bool, status: int | None) -> SendError:
        secrets = [self._settings.smtp_password]
        return SendError(scrub(short(reason), secrets), permanent=permanent, status=status)


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply
