"""gunicorn settings for Settee, taken from Settee's own settings (``SETTEE_*``).

Run as ``settee serve`` or ``gunicorn -c config/gunicorn.conf.py``. Threaded workers
(``gthread``) so a long-polling ``_changes`` request holds a thread, not a process.
"""
from settee.config import load_settings

_settings = load_settings()

wsgi_app = "settee.server.wsgi:application"
bind = [_settings["server_bind"]]
workers = _settings["server_workers"]
threads = _settings["server_threads"]
worker_class = "gthread"
timeout = _settings["server_timeout"]
graceful_timeout = 30          # SIGTERM: in-flight requests get this long to finish
keepalive = 5
limit_request_line = 8190      # URL size limit (bytes)
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = _settings["server_access_log"] or None
errorlog = "-"
loglevel = _settings["server_log_level"]
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
proc_name = "settee"
