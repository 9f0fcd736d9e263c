"""The lifecycle app's views, one module per concern (mirroring lifecycle.models).

- releases: the release panel, release and withdraw, release notes and history, the feed
- notices: notices needing a decision, an image's notices panel, preview, unsubscribe
- customers: the customer list and its CSV import
- triggers: the Triggers page, bulk rebuilds, deprecation and advisory partials
- requests: the public image request form and the managers' triage pages
"""
