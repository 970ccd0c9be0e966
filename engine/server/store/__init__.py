"""The store: every accepted webhook, its events, each attempt, and the contacts known."""
