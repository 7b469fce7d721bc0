"""The management plane: ``iovctl daemon``'s HTTP API, web console and metrics.

A front end like the CLI: handlers call :mod:`iovctl.services.api` through the
:class:`~iovctl.http.gateway.Gateway` and nothing else of services. Needs the
``daemon`` extra (FastAPI, uvicorn, Jinja2, prometheus-client); nothing else of
iovctl imports this package.
"""
