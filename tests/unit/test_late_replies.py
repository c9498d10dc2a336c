"""pyfuse3's ERROR for a reply the kernel no longer waited for is debug noise; its other errors stay errors."""

from __future__ import annotations

import logging

import pytest

from s3fuse.daemon import LateReplies


@pytest.fixture
def pyfuse3_log(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("pyfuse3")
    late = LateReplies()
    logger.addFilter(late)
    caplog.set_level(logging.INFO, logger="pyfuse3")
    yield logger, caplog
    logger.removeFilter(late)


def test_a_reply_nobody_waits_for_is_not_an_error(pyfuse3_log) -> None:
    logger, caplog = pyfuse3_log
    logger.error("fuse_release(): fuse_reply_* failed with %s", "No such file or directory")
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_other_reply_failures_stay_errors(pyfuse3_log) -> None:
    logger, caplog = pyfuse3_log
    logger.error("fuse_read(): fuse_reply_* failed with %s", "Invalid argument")
    logger.error("some other pyfuse3 error")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "fuse_read(): fuse_reply_* failed with Invalid argument"),
        (logging.ERROR, "some other pyfuse3 error")]
