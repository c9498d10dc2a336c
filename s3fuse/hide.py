"""Keep secrets given on the command line (`-o aws.secretKey=...`, `--option`, `-D`) out of `ps`: the process's
own argument memory, which /proc/PID/cmdline shows, is overwritten in place."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)

SECRET = re.compile(rb"(secretKey=|secret_key=|SecretAccessKey=)([^,\x00]+)", re.IGNORECASE)


def argument_range() -> tuple[int, int]:
    """Start and end of the argument strings in this process's memory (proc(5), /proc/self/stat 48-49)."""
    with open("/proc/self/stat", "rb") as handle:
        fields = handle.read().rpartition(b")")[2].split()
    return int(fields[45]), int(fields[46])  # fields after the command name start at field 3


def masked(arguments: bytes) -> bytes:
    return SECRET.sub(lambda match: match.group(1) + b"*" * len(match.group(2)), arguments)


def hide_secrets_from_ps() -> None:
    """Best effort: a kernel that refuses writes to /proc/self/mem leaves the arguments as they are."""
    try:
        start, end = argument_range()
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            arguments = memory.read(end - start)
            hidden = masked(arguments)
            if hidden != arguments:
                memory.seek(start)
                memory.write(hidden)
    except (OSError, ValueError, IndexError) as exc:
        log.debug("cannot hide secrets from the process list: %s", exc)


CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127] if code != 9}


class SafeFormatter(logging.Formatter):
    """Log lines that hide secrets (`secretKey=...`) and stay one line even when a key holds a newline or
    other control characters; a traceback still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record).translate(CONTROL).encode("utf-8", "surrogateescape")
        return SECRET.sub(lambda match: match.group(1) + b"***", line).decode("utf-8", "surrogateescape")
