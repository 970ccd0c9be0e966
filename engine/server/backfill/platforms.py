"""The platforms a backfill can read, by name: each one's client, topic and variables.

Shopify (REST Admin API), WooCommerce (REST API v3), BigCommerce (V2 Orders API),
Ecwid (REST API v3), PrestaShop (the webservice) and Magento (REST ``V1/orders``) list
orders by creation date, and Stripe its Checkout sessions. Wix and commercetools are for
a later round (docs/backfill.md says what each would need).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from engine.errors import UsageError, did_you_mean
from engine.server.backfill import (
    bigcommerce,
    ecwid,
    magento,
    prestashop,
    shopify,
    stripe,
    woocommerce,
)
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
    #: rule sets of other names that read this platform's webhooks, and the topic of each
    #: (Magento's ``magento-webhooks`` reads Commerce Webhooks, not I/O Events)
    rulesets: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def topic_for(self, ruleset: str) -> str:
        """The topic orders go through in the rule set called ``ruleset``."""
        return self.rulesets.get(ruleset, self.topic)


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
        PlatformInfo(
            ecwid.NAME, ecwid.TOPIC, ecwid.VARIABLES, ecwid.Ecwid, ecwid.RATE, ecwid.PAGE_SIZE
        ),
        PlatformInfo(
            prestashop.NAME,
            prestashop.TOPIC,
            prestashop.VARIABLES,
            prestashop.PrestaShop,
            prestashop.RATE,
            prestashop.PAGE_SIZE,
        ),
        PlatformInfo(
            magento.NAME,
            magento.TOPIC,
            magento.VARIABLES,
            magento.Magento,
            magento.RATE,
            magento.PAGE_SIZE,
            magento.RULESETS,
        ),
        PlatformInfo(
            stripe.NAME,
            stripe.TOPIC,
            stripe.VARIABLES,
            stripe.Stripe,
            stripe.RATE,
            stripe.PAGE_SIZE,
        ),
    )
}


def platform_of(ruleset: str) -> str | None:
    """The platform a rule set of this name reads (its own name, or one a platform lists)."""
    if ruleset in PLATFORMS:
        return ruleset
    return next((p.name for p in PLATFORMS.values() if ruleset in p.rulesets), None)


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
