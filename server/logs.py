"""Structured logs: one JSON object a line, for the access log and the error log."""
from __future__ import annotations

import json
import logging
import time

from gunicorn.glogging import Logger


class JSONFormatter(logging.Formatter):
    """``{"time", "level", "logger", "process", "message"[, "error"]}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname,
                 "logger": record.name, "process": record.process,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class AccessLogger(Logger):
    """gunicorn's logger, writing each access as JSON (values escaped properly)."""

    def access(self, resp, req, environ, request_time):
        if not self.cfg.accesslog:          # access log off (SETTEE_SERVER_ACCESS_LOG=)
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "remote": environ.get("REMOTE_ADDR"), "method": environ.get("REQUEST_METHOD"),
                 "path": environ.get("RAW_URI") or environ.get("PATH_INFO"),
                 "status": resp.status_code, "bytes": getattr(resp, "sent", None),
                 "ms": round(request_time.total_seconds() * 1000, 2),
                 "agent": environ.get("HTTP_USER_AGENT")}
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=False))
        except Exception:       # a log line must never fail a request
            self.exception("access log failed")
