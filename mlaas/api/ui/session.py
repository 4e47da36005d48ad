"""The console's session: the API key in an HttpOnly SameSite=Strict cookie, CSRF tokens, security headers.

The key is sent once, in the login form's POST body, and kept only in the cookie (never in a URL or a log).
Every form post carries a token equal to a second random cookie (double submit); SameSite=Strict keeps both
cookies off cross-site requests in the first place.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Request, g, request
from werkzeug.wrappers import Response

from mlaas.api.security import CONSOLE_COOKIE
from mlaas.errors import Forbidden

CSRF_COOKIE = "mlaas_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/ui"
CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def is_https(req: Request) -> bool:
    """Served over https (directly, or behind a proxy that says so): cookies are then Secure."""
    return req.is_secure or req.headers.get("X-Forwarded-Proto", "").lower() == "https"


def csrf_token() -> str:
    """This browser's CSRF token (made on first use; the response sets its cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = g.setdefault("new_csrf", secrets.token_urlsafe(32))
    return token


def check_csrf() -> None:
    """Refuse (403) a form post whose token is missing or differs from the browser's CSRF cookie."""
    cookie, sent = request.cookies.get(CSRF_COOKIE, ""), request.form.get(CSRF_FIELD, "")
    if len(cookie) < 32 or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden(f"{CSRF_FIELD}: the form's token is missing or stale; reload the page and send it again")


def _set(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=is_https(request), path=COOKIE_PATH)


def keep_key(response: Response, key: str) -> None:
    """Keep the API key for the console's later requests (a browser-session cookie)."""
    _set(response, CONSOLE_COOKIE, key)


def forget_key(response: Response) -> None:
    response.delete_cookie(CONSOLE_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict",
                           secure=is_https(request))


def finish(response: Response) -> Response:
    """Security headers on every console answer, and the CSRF cookie when this request made a token."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)  # the drift report keeps its own CSP (inline styles)
    new = g.pop("new_csrf", None)
    if new:
        _set(response, CSRF_COOKIE, new)
    return response
