"""The CLI's way to the daemon (``iovctl --connect URL``): one command, one request.

``unix:///run/iovctl/iovctl.sock`` (the admin socket; the read-only one reads) or
``https://HOST:PORT`` with a bearer token (``IOVCTL_TOKEN``) and, for a private CA,
``IOVCTL_CACERT``. Answers come back as the JSON ``-o json`` prints, errors as the
IovctlError family of their HTTP status with the daemon's code, message and hint,
so the CLI prints and exits as it would on the state itself.
Needs httpx only (not the daemon's FastAPI).
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from iovctl.cli.commands import Command
from iovctl.domain.text import shown
from iovctl.errors import HardwareError, InvalidInput, IovctlError, StateError
from iovctl.http.errors import family_of
from iovctl.http.routes import PREFIX, options_of, route_for

#: A write may wait for the machine (a VF count change) and for other commands.
TIMEOUT = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=30.0)


def _segment(value: str) -> str:
    # Dots alone would be read as ".." path steps; encoded, they are a name again.
    return "".join("%2E" for _ in value) if value in (".", "..") else quote(value, safe="")


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("unix://"):
            path = url.removeprefix("unix://")
            if not path.startswith("/"):
                raise InvalidInput(
                    "invalid-connect",
                    f"--connect {shown(url)!r}: a unix socket needs an absolute path",
                    "e.g. --connect unix:///run/iovctl/iovctl.sock",
                )
            transport = httpx.HTTPTransport(uds=path)
            self.http = httpx.Client(transport=transport, base_url="http://iovctl", timeout=TIMEOUT)
        elif url.startswith("https://"):
            headers = {}
            token = os.environ.get("IOVCTL_TOKEN")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            cafile = os.environ.get("IOVCTL_CACERT") or None
            verify = ssl.create_default_context(cafile=cafile)
            self.http = httpx.Client(base_url=url, headers=headers, verify=verify, timeout=TIMEOUT)
        else:
            raise InvalidInput(
                "invalid-connect",
                f"--connect {shown(url)!r} is neither unix:///PATH nor https://HOST:PORT",
                "e.g. --connect unix:///run/iovctl/iovctl.sock (env IOVCTL_CONNECT)",
            )

    def close(self) -> None:
        self.http.close()

    def _unreachable(self, exc: Exception) -> StateError:
        return StateError(
            "daemon-unreachable",
            f"cannot reach the iovctl daemon at {shown(self.url)}: {exc}",
            "start it (systemctl start iovctld), or check --connect / IOVCTL_CONNECT",
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc
        return _result(answer)

    def run(self, command: Command, options: dict[str, Any]) -> Any:
        """What ``command`` with ``options`` (the service's keyword arguments) answers."""
        route = route_for(command.words)
        keys = options_of(command)
        path_values = {k: str(options[k]) for k in keys if "{" + k + "}" in route.path}
        path = PREFIX + route.path.format(**{k: _segment(v) for k, v in path_values.items()})
        rest = {k: v for k, v in options.items() if k not in path_values and v is not None}
        if command.writes:
            return self.request(route.method, path, json=rest)
        query = {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in rest.items()}
        return self.request(route.method, path, params=query)

    def events(self, since: int, filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Events after ``since`` as they are committed (server-sent events), forever."""
        params = {"since": str(since), **{k: v for k, v in filters.items() if v is not None}}
        try:
            with self.http.stream(
                "GET",
                f"{PREFIX}/events/stream",
                params=params,
                timeout=httpx.Timeout(5.0, read=None),
            ) as answer:
                if answer.status_code != 200:
                    answer.read()
                    _result(answer)
                data: list[str] = []
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except (httpx.TransportError, OSError) as exc:
            raise self._unreachable(exc) from exc


def _result(answer: httpx.Response) -> Any:
    if answer.is_success:
        return answer.json()
    try:
        error = answer.json()["error"]
        code, message, hint = str(error["code"]), str(error["message"]), str(error["hint"])
    except (ValueError, KeyError, TypeError):
        raise IovctlError(
            "daemon-error",
            f"the daemon answered {answer.status_code}: {shown(answer.text, 300)}",
            "see the daemon's log (journalctl -u iovctld)",
        ) from None
    family = family_of(answer.status_code)
    if issubclass(family, HardwareError):
        raise HardwareError(code, message, hint)
    raise family(code, message, hint)
