"""The management API: `/v1/endpoints...` over aiohttp, bearer tokens, an OpenAPI document.

`start_admin(settings, catalog)` serves it beside a worker (or alone: `dispatcher admin`).
Reads come from the catalog; writes decide with `dispatcher.endpoints.operations` and return
once the broker acknowledged the record.
"""

from dispatcher.admin.app import build_app, start_admin

__all__ = ["build_app", "start_admin"]
