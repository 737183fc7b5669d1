"""The local file channel (the embedded ``make run``, tests): each part is appended as one
JSON line ``{"event_id", "type", "part" (the index), "subject", "text", "simulated"}`` to the
target path, relative to :attr:`NotifySettings.file_dir` unless absolute. Parent folders are
created; each line is written with one ``write`` on a file opened for appending, then
fsynced, so concurrent senders never interleave lines.

Errors: a path that escapes ``file_dir`` (``..``), is empty or holds a NUL → permanent at
construction; permission denied, a directory in the way → permanent; other OS errors (a full
disk) → transient.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from quant.notify.events import Envelope
from quant.notify.rendered import Rendered
from quantbeat.infra.notify.base import SendError, Sent

_PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EROFS})


def resolve_path(address: str | None, file_dir: str) -> Path:
    """The file a target writes to.

    Raises:
        SendError: permanent, an empty path, a NUL, or a relative path leaving ``file_dir``
            (the path is named).
    """
    if not address or not address.strip() or "\0" in address:
        raise SendError(f"file target {address!r} is not a path", permanent=True)
    path = Path(address)
    if path.is_absolute():
        return path
    base = Path(file_dir).resolve()
    resolved = (base / path).resolve()
    if not resolved.is_relative_to(base):
        raise SendError(
            f"file target {address!r} leaves the notification folder {str(base)!r}",
            permanent=True,
        )
    return resolved


class FileSender:
    """Appends each part as one JSON line."""

    def __init__(self, *, path: Path) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path

    def rate_keys(self) -> list[tuple[str, float]]:
        """No limit."""
        return []

    def send(self, part: str, *, index: int, rendered: Rendered, envelope: Envelope) -> Sent:
        """Append the line for ``part``; returns ``Sent(None)``.

        Raises:
            SendError: see the module docstring.
        """
        line = {
            "event_id": envelope.id,
            "type": envelope.type,
            "part": index,
            "subject": rendered.subject,
            "text": part,
            "simulated": envelope.simulated,
        }
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, data)
                while written < len(data):  # a short write (signal, quota): finish the line
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SendError(
                f"file {str(self._path)!r}: {exc.strerror or type(exc).__name__}",
                permanent=exc.errno in _PERMANENT_ERRNOS,
            ) from None
        return Sent(provider_ref=None)
