"""Who may do what: the role of a request.

A unix socket's role is fixed when it is bound (file permissions decide who can
connect: the admin socket is group ``iovctl``, the read-only socket anyone's). Over
TCP every request carries a bearer token whose role (``reader``/``admin``) the
:class:`~iovctl.http.tokens.TokenStore` knows. Routes that change anything call
:func:`require_admin`.
"""

from __future__ import annotations

from typing import Literal, cast

from fastapi import Request

from iovctl.http.errors import Unauthorized, read_only
from iovctl.http.tokens import TokenStore

Role = Literal["admin", "reader"]


async def authenticate(request: Request) -> None:
    """Every route's dependency: on a TCP app, the bearer token gives the role."""
    tokens: TokenStore | None = request.app.state.tokens
    if tokens is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    role = tokens.verify(token.strip()) if scheme.lower() == "bearer" else None
    if role is None:
        raise Unauthorized(
            "unauthorized",
            "no valid bearer token in the Authorization header",
            "send 'Authorization: Bearer TOKEN' with a token from 'iovctl token add'",
        )
    request.state.role = role


def role_of(request: Request) -> Role:
    if request.app.state.tokens is None:
        return cast(Role, request.app.state.role)
    return cast(Role, request.state.role)


def require_admin(request: Request) -> None:
    """Raises Forbidden(``read-only``) unless the caller may change things."""
    if role_of(request) != "admin":
        raise read_only()
