"""Cross-site request forgery: every form write of the admin is checked twice.

1. **Same origin.** A browser says where a request comes from: ``Sec-Fetch-Site``
   (``same-origin`` or ``none`` for one typed or bookmarked), else ``Origin``, else
   ``Referer``. When one of them is there and names another site, the write is refused.
2. **A token.** Each browser gets a random ``settee_csrf`` cookie (``SameSite=Strict``,
   not readable by scripts); every form carries ``_csrf``, an HMAC of that cookie under
   the server's secret. Another site can make a browser send the cookie, never read
   it, so it cannot make the field.

The JSON API needs neither: its POSTs take only JSON or YAML bodies, which a form on
another site cannot send (see :func:`settee.server.http.check_body_type`).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from ..errors import HTTPError

COOKIE = "settee_csrf"
FIELD = "_csrf"


DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def origin_of(scheme: str, host: str) -> str:
    """``scheme://host``, lower case, without the scheme's default port."""
    scheme, host = scheme.lower(), host.lower()
    if host.endswith(DEFAULT_PORTS.get(scheme, "\x00")):
        host = host[:-len(DEFAULT_PORTS[scheme])]
    return f"{scheme}://{host}"


def own_origin(environ) -> str:
    host = environ.get("HTTP_HOST") or \
        f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return origin_of(environ.get("wsgi.url_scheme", "http"), host)


def new_cookie() -> str:
    return secrets.token_hex(16)


def token_for(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, b"csrf\x00" + cookie.encode(), hashlib.sha256).hexdigest()


def refuse(reason: str) -> HTTPError:
    return HTTPError(403, "forbidden", f"Cross-site request refused: {reason}")


def check_origin(request) -> None:
    """403 when the browser says the request comes from another site."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise refuse(f"it was sent from a {site} page")
    ours = own_origin(request.environ)
    origin = request.headers.get("Origin")
    if origin is not None:
        scheme, _, host = origin.partition("://")
        if origin_of(scheme, host) != ours:
            raise refuse("its Origin is another site")
        return
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        if origin_of(parts.scheme, parts.netloc) != ours:
            raise refuse("its Referer is another site")


def check(request, secret: bytes) -> None:
    """The two checks of a form write: the same origin, and the token."""
    check_origin(request)
    cookie = request.cookies.get(COOKIE)
    sent = request.form.get(FIELD, "")
    if not cookie:
        raise refuse("no CSRF cookie (are cookies enabled?); reload the page and try again")
    if not hmac.compare_digest(sent.encode(), token_for(secret, cookie).encode()):
        raise refuse("the form's CSRF token is missing or wrong; reload the page and try again")
