"""structlog configuration: JSON off a TTY, readable console on one."""

import logging
import sys

import structlog

from telemetry_core.settings import Settings


def configure_logging(settings: Settings, process: str) -> structlog.stdlib.BoundLogger:
    """Configure structlog for this process and return a logger bound to its name."""
    level = getattr(logging, settings.log_level.upper())
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
    # Every logger of the process, module-level ones included, names the process.
    structlog.contextvars.bind_contextvars(process=process)
    log: structlog.stdlib.BoundLogger = structlog.get_logger()
    return log
