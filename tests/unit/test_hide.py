"""Secrets masked in arguments and log lines; control characters cannot split a log line."""

from __future__ import annotations

import logging

from s3fuse.hide import SafeFormatter, masked


def test_arguments_keep_their_length_and_lose_the_secret() -> None:
    raw = b"-o\x00endpoint=x,aws.secretKey=TOPSECRET,aws.accessKeyId=AK\x00--option\x00aws.secretKey=S2\x00"
    hidden = masked(raw)
    assert len(hidden) == len(raw)
    assert b"TOPSECRET" not in hidden and b"S2\x00" not in hidden and b"aws.accessKeyId=AK" in hidden


def test_log_lines_are_one_line_without_secrets() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "key %s and aws.secretKey=%s", ("a\nb\x01", "X1"),
                               None)
    line = formatter.format(record)
    assert "\n" not in line and "X1" not in line and "secretKey=***" in line
