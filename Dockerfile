# Settee: CouchDB's HTTP API over a stack of dict layers, served by gunicorn.
#
#   docker build -t settee .
#   docker run -e SETTEE_ADMIN_USER=admin -e SETTEE_ADMIN_PASSWORD=secret \
#              -p 5984:5984 -v settee-data:/data settee
#
# The server refuses to listen on a non-loopback address (here 0.0.0.0) unless a
# server admin is configured, so SETTEE_ADMIN_USER and SETTEE_ADMIN_PASSWORD are
# required. Any other SETTEE_* setting (README, "Configuration") can be passed with -e;
# arguments after the image name go to gunicorn (`docker run ... settee --workers 4`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The unprivileged user the server runs as. It has a home directory because gunicorn
# (25.1+) opens its control socket at $HOME/.gunicorn/gunicorn.ctl (for `gunicornc`).
RUN groupadd --gid 5984 settee \
 && useradd --uid 5984 --gid settee --create-home --home-dir /home/settee \
            --shell /usr/sbin/nologin settee \
 && mkdir -p /data \
 && chown settee:settee /data

# Install the project (not editable, no virtualenv: the image is the environment),
# with the LMDB and PostgreSQL backends, then drop the source.
COPY . /tmp/settee-src
RUN pip install '/tmp/settee-src[lmdb,postgresql]' \
 && rm -rf /tmp/settee-src \
 && settee --help >/dev/null

ENV HOME=/home/settee \
    SETTEE_BIND=0.0.0.0:5984 \
    SETTEE_DATA_DIR=/data

USER settee
WORKDIR /home/settee
VOLUME ["/data"]
EXPOSE 5984

# /_up answers 200 when the data directory is writable and above the free-space floor.
# The port comes from Settee's own settings loader, as the server reads it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; from settee.config import load_settings; port = load_settings()['server_bind'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/_up', timeout=4)"]

# `settee serve` checks the admin setting, then execs gunicorn with the packaged
# config/gunicorn.conf.py, so gunicorn is PID 1 and SIGTERM shuts it down gracefully:
# in-flight requests get up to 30 s (graceful_timeout), so give `docker stop` as long
# (`docker run --stop-timeout 35`, compose `stop_grace_period: 35s`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["settee", "serve"]
