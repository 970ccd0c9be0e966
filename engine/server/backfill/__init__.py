"""History backfill: a shop's past orders, read from its platform's API, through the same
rules, store and ledger as its webhooks (``hookmap backfill``; docs/backfill.md).

The parts, in the order a run uses them:

* ``api``: one GET at a time to a platform's API, paced to its rate limit and retried
  when a later answer may differ (429 with ``Retry-After``, 5xx, network errors);
* ``source``: what every platform's client gives (pages of orders, each order as the
  webhook its platform would have sent) and the variables it reads;
* ``shopify``, ``woocommerce``, ``bigcommerce``: one client per platform API, and
  ``platforms`` naming them;
* ``cursor``: where an interrupted run continues, kept beside the store;
* ``runner``: pages → stored webhooks (a deterministic delivery id each, so nothing is
  stored or sent twice) → the processor → the events the dispatcher sends.
"""
