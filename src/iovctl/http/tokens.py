"""Bearer tokens for the daemon's TCP listener, stored hashed in the state directory.

A token is 32 random bytes (``iovctl_`` + URL-safe base64), shown once by ``iovctl
token add``. The file (``daemon-tokens.json``, mode 0600) keeps each token's name,
role and SHA-256: a 256-bit random secret cannot be guessed, so a slow hash
(PBKDF2) would only add its cost to every request; it protects low-entropy
passwords, which these are not. Compared in constant time.
Only the standard library: the CLI's ``token`` commands import this without the
daemon's dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from iovctl.domain.text import shown
from iovctl.errors import Conflict, InvalidInput, NotFound, StateError

FILE_NAME = "daemon-tokens.json"
ROLES = ("reader", "admin")
PREFIX = "iovctl_"


@dataclass(slots=True)
class TokenEntry:
    name: str
    role: str
    sha256: str
    created: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens of one state directory; re-read when the file changes, so a token
    added or removed while the daemon runs counts at once."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._seen: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []

    def entries(self) -> list[TokenEntry]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, []
            return []
        except OSError as exc:
            raise self._unusable(exc) from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._seen:
            try:
                doc = json.loads(self.path.read_text())
                self._entries = [TokenEntry(**e) for e in doc["tokens"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StateError(
                    "tokens-unreadable",
                    f"token file {self.path} cannot be read: {exc}",
                    "remove it and add the tokens again with 'iovctl token add'",
                ) from exc
            self._seen = stamp
        return list(self._entries)

    def verify(self, token: str) -> str | None:
        """The role of ``token``, or None."""
        if not token.startswith(PREFIX):
            return None
        digest = _digest(token)
        role = None
        for e in self.entries():  # every entry compared: no early exit to time
            if hmac.compare_digest(e.sha256, digest):
                role = e.role
        return role

    def add(self, name: str, role: str) -> str:
        """A new token named ``name``; returns it (the only time it is seen)."""
        if role not in ROLES:
            raise InvalidInput(
                "invalid-role", f"role {shown(role)!r} is unknown", "use reader or admin"
            )
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(
                "invalid-name",
                f"token name {shown(name)!r} is not valid",
                "use 1-64 letters, digits, - and _",
            )
        entries = self.entries()
        if any(e.name == name for e in entries):
            raise Conflict(
                "token-exists",
                f"token {name} already exists",
                f"remove it first: iovctl token remove {name}",
            )
        token = PREFIX + secrets.token_urlsafe(32)
        self._save([*entries, TokenEntry(name, role, _digest(token), time.time())])
        return token

    def remove(self, name: str) -> None:
        entries = self.entries()
        kept = [e for e in entries if e.name != name]
        if len(kept) == len(entries):
            raise NotFound(
                "token-not-found", f"no token named {shown(name)}", "see: iovctl token list"
            )
        self._save(kept)

    def _save(self, entries: list[TokenEntry]) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"tokens": [asdict(e) for e in entries]}, f, indent=1)
            tmp.replace(self.path)
        except OSError as exc:
            raise self._unusable(exc) from exc

    def _unusable(self, exc: OSError) -> StateError:
        return StateError(
            "tokens-unusable",
            f"token file {shown(str(self.path))} cannot be used: {exc.strerror or exc}",
            "give --state-dir a directory iovctl can write (as the daemon's user)",
        )
