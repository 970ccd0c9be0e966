"""hookmap: declarative rules that turn shop webhooks into eSputnik (Yespo) events."""
