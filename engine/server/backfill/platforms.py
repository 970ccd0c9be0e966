"""The platforms a backfill can read, by name: each one's client, topic and variables.

Shopify (REST Admin API), WooCommerce (REST API v3) and BigCommerce (V2 Orders API)
list orders by creation date. The other shipped platforms are left out on purpose:
Magento and PrestaShop need a store-specific setup of their APIs, and Ecwid, Wix,
commercetools and Stripe are for a later round (docs/backfill.md says what each
would need).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from engine.errors import UsageError, did_you_mean
from engine.server.backfill import bigcommerce, shopify, woocommerce
from engine.server.backfill.api import Options
from engine.server.backfill.source import Platform, Variable, Window, read_variables

#: ``make(values, window, options)``: a client for one shop's orders in one window
Maker = Callable[[Mapping[str, str], Window, Options], Platform]


@dataclasses.dataclass(frozen=True)
class PlatformInfo:
    name: str
    #: the topic each order is fed through unless ``--topic`` names another
    topic: str
    variables: tuple[Variable, ...]
    make: Maker
    #: requests a second a run makes unless ``--api-rate`` says
    rate: float
    page_size: int


PLATFORMS: dict[str, PlatformInfo] = {
    info.name: info
    for info in (
        PlatformInfo(
            shopify.NAME,
            shopify.TOPIC,
            shopify.VARIABLES,
            shopify.Shopify,
            shopify.RATE,
            shopify.PAGE_SIZE,
        ),
        PlatformInfo(
            woocommerce.NAME,
            woocommerce.TOPIC,
            woocommerce.VARIABLES,
            woocommerce.WooCommerce,
            woocommerce.RATE,
            woocommerce.PAGE_SIZE,
        ),
        PlatformInfo(
            bigcommerce.NAME,
            bigcommerce.TOPIC,
            bigcommerce.VARIABLES,
            bigcommerce.BigCommerce,
            bigcommerce.RATE,
            bigcommerce.PAGE_SIZE,
        ),
    )
}


def platform_info(name: str) -> PlatformInfo:
    """The platform called ``name``; ``UsageError`` with the names there are."""
    info = PLATFORMS.get(name)
    if info is None:
        hint = did_you_mean(name, PLATFORMS)
        raise UsageError(
            f"no backfill for platform '{name}' (there is: {', '.join(PLATFORMS)})"
            + (f"; {hint}" if hint else "")
        )
    return info


def open_platform(
    info: PlatformInfo, env: Mapping[str, str], window: Window, options: Options, whose: str
) -> Platform:
    """A client for the shop whose variables ``env`` holds (``whose`` names it in errors)."""
    return info.make(read_variables(info.variables, env, whose), window, options)
