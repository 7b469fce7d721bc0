"""Cross-site request forgery checks for the console's form posts.

The console has no login: who may change things is decided by the socket (admin or
read-only). A page of another site in the same browser must still not be able to
post to it, so every POST passes two independent checks:

- a token, signed with a secret of this process, that the page received in a
  ``SameSite=Strict`` cookie and sends back in a header (``X-CSRF-Token``, htmx's
  ``hx-headers``) or a form field (plain forms): another site can neither read the
  page nor set a cookie that this secret signed (double-submit, signed);
- the browser's own word on where the request comes from: ``Sec-Fetch-Site`` must be
  ``same-origin`` and ``Origin`` must be this server, when the browser sends them
  (every current browser does; programs like curl send neither and need the token).

Must not import services or the rest of the console.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: The cookie that carries the token, and the header and form field that repeat it.
COOKIE = "iovctl_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf_token"


class CsrfTokens:
    """Issues and checks tokens signed with a secret that lives as long as the process
    (a restarted daemon issues new ones: a page open across a restart must be reloaded).
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is one this process issued."""
        if not token or token.count(".") != 1:
            return False
        nonce, mac = token.split(".")
        return hmac.compare_digest(mac, self._sign(nonce))

    def matches(self, cookie: str | None, sent: str | None) -> bool:
        """The double-submit check: the cookie is ours and the page sent it back."""
        return self.valid(cookie) and sent is not None and hmac.compare_digest(cookie or "", sent)


def same_origin(origin: str | None, fetch_site: str | None, scheme: str, host: str | None) -> bool:
    """Whether the browser says the request comes from this server's own pages.

    ``origin``/``fetch_site``: the ``Origin`` and ``Sec-Fetch-Site`` headers, None when
    absent (a program, not a browser); ``scheme``/``host``: this request's own.
    """
    if fetch_site is not None and fetch_site != "same-origin":
        return False
    return origin is None or (host is not None and origin == f"{scheme}://{host}")
