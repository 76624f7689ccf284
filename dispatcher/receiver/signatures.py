"""Standard Webhooks verification with the `standardwebhooks` package, per endpoint (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from standardwebhooks import Webhook

_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class Verifier:
    """Checks each endpoint's requests against that endpoint's secrets, if it has any."""

    __slots__ = ("_hooks",)

    def __init__(self, secrets: Mapping[str, Sequence[str | bytes]]) -> None:
        self._hooks = {
            eid: tuple(Webhook(s) for s in keys) for eid, keys in secrets.items() if keys
        }

    def check(self, endpoint_id: str, body: bytes, headers: Mapping[str, str]) -> bool | None:
        """True or False; None when this endpoint has no secrets (nothing to check)."""
        hooks = self._hooks.get(endpoint_id)
        if hooks is None:
            return None
        signed = {name: headers.get(name, "") for name in _SIGNATURE_HEADERS}
        return any(_verifies(hook, body, signed) for hook in hooks)


def _verifies(hook: Webhook, body: bytes, headers: dict[str, str]) -> bool:
    try:
        hook.verify(body, headers, json_parse=False)
    except Exception:  # the library raises ValueError, binascii.Error, ... on malformed input
        return False
    return True
