"""The outage bookkeeping alone: one line when a database goes, one when it is back, and the
flapping at a shutdown's edges does not make a second outage."""

from __future__ import annotations

import logging
import time

import pytest

from api.db.availability import Availability


def test_one_line_each_way_and_edges_do_not_flap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    logger = logging.getLogger("test.availability")
    availability = Availability("PostgreSQL at test", logger, settle_s=0.2)
    availability.succeeded()
    assert availability.up and not caplog.records
    for _ in range(50):  # every request of the outage
        availability.failed("connection refused")
    availability.succeeded()  # a connection accepted mid-shutdown: too soon to call it back
    availability.failed("the database system is starting up")
    assert not availability.up
    time.sleep(0.25)
    availability.succeeded()
    availability.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "is unavailable: connection refused" in lines[0]
    assert "is back after" in lines[1]
    assert availability.up and availability.outages == 1
