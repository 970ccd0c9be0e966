"""Where events go: the CDP's URL and credentials, read from the environment.

``HOOKMAP_API_URL`` defaults to the vendor's documented base URL; ``HOOKMAP_API_KEY``
is the API key, sent as the password of HTTP Basic auth. The key is never printed:
``masked`` stands in for it everywhere output is produced.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Mapping

DEFAULT_API_URL = "https://esputnik.com/api"
API_URL_ENV = "HOOKMAP_API_URL"
API_KEY_ENV = "HOOKMAP_API_KEY"
#: the Basic auth user name; the service ignores it, the key is the password
USER = "hookmap"
#: requests per second the CDP allows on v1/event and v2/event, per account
RATE_LIMIT = 350.0


@dataclasses.dataclass(frozen=True)
class Destination:
    base_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Destination:
        env = os.environ if env is None else env
        url = (env.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")
        return cls(url, env.get(API_KEY_ENV) or None)

    @property
    def account(self) -> str:
        """Which CDP account this is, without its key: the rate limit is per account.

        A digest of the base URL and the key, so two shops with one key share a limit and
        nothing printed or stored can give the key back.
        """
        material = f"{self.base_url}\n{self.api_key or ''}".encode()
        return hashlib.sha256(material).hexdigest()[:16]

    def event_url(self, version: str) -> str:
        """``…/v1/event`` or ``…/v2/event``."""
        return f"{self.base_url}/{version}/event"

    def headers(self) -> dict[str, str]:
        """Request headers, including the real Authorization (never print these)."""
        out = {
            "Content-Type": "application/json; charset=UTF-8",
            "Accept": "application/json",
        }
        if self.api_key:
            token = base64.b64encode(f"{USER}:{self.api_key}".encode()).decode("ascii")
            out["Authorization"] = f"Basic {token}"
        return out


def masked(secret: str | None) -> str:
    """What stands in for a secret in output: never any of its characters."""
    return "<unset>" if not secret else "****"
