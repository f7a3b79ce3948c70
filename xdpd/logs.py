"""Structured logging: one place decides how events are rendered.

Code logs events with fields (``log.info("attached", iface="eth0",
mode="native")``); this module picks the renderer.  Keeping the fields
structured is what lets them become journald fields later without touching
the callers.
"""

from __future__ import annotations

import logging
import sys

import structlog


def setup(level: int = logging.INFO) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str = "xdpd"):
    return structlog.get_logger(name)
