"""Bearer tokens of the management API. Pure."""

from __future__ import annotations

import hmac

from dispatcher.errors import ConfigError
from dispatcher.model import Settings

_SCHEME = "bearer "


def admin_tokens(settings: Settings) -> tuple[str, ...]:
    """The API's tokens; a ConfigError naming `admin.token_env` when its variable is unset
    (the API never starts without a token)."""
    tokens = settings.admin.tokens
    if not tokens:
        name = settings.admin.token_env
        raise ConfigError(
            settings.source_file,
            "admin.token_env",
            f"the environment variable {name} is not set: it holds the management API's"
            " bearer tokens, comma-separated",
        )
    return tokens


class TokenCheck:
    """Which configured token an `Authorization` header carries, if any."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    def who(self, authorization: str | None) -> str | None:
        """`api:token-N` (N: the token's place in the variable, from 1), or None. Every
        token is compared in constant time, so the answer's timing tells nothing."""
        if authorization is None or authorization[: len(_SCHEME)].lower() != _SCHEME:
            return None
        given = authorization[len(_SCHEME) :].strip().encode()
        found = None
        for index, token in enumerate(self._tokens):
            if hmac.compare_digest(given, token) and found is None:
                found = index
        return None if found is None else f"api:token-{found + 1}"
