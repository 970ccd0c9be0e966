"""``hookmap playground``: a local page to try rules on a webhook, live as you type.

``session`` does the work (the same loading and pipeline as validate and dry-run),
``app`` serves it and the page (``static/``: plain HTML, CSS and JavaScript, no build
step, nothing fetched from elsewhere), ``run`` runs the server. The app is handed the
session's two functions (``session.handlers``) rather than importing them.
"""
