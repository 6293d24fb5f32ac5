"""TINYFLEET_LOG_FORMAT=json: the server's log lines as JSON, one object per line (for log shippers)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# uvicorn's loggers have handlers of their own (uvicorn.access and uvicorn.error do not propagate).
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def apply_format(fmt: str) -> None:
    """Give every handler of the root and uvicorn loggers the JSON formatter (fmt "json"); for "text"
    nothing changes. Called when the app is built and again at startup, after uvicorn set up its own."""
    if fmt != "json":
        return
    formatter = JsonFormatter()
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)


def uvicorn_log_config(fmt: str) -> dict[str, Any] | None:
    """`uvicorn.run(log_config=...)` for this format: None (uvicorn's default) for text; for json, every
    uvicorn line through JsonFormatter from the first one on (apply_format only catches later lines)."""
    if fmt != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
