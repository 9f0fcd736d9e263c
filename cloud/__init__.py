"""The one adapter between the factory and the cloud (Scaleway, or localcloud).

Everything that talks to the cloud goes through this package, never raw HTTP:

- `cloud.clients`: SDK clients, API objects and per-region S3 clients from the environment;
- `cloud.cancel`: the one `Cancelled` exception and `CancelCheck` callable of every layer;
- `cloud.retries`: `call()`, which retries throttling and unavailability with backoff and
  turns every other failure into a `CloudError` carrying the API's message in plain words;
- `cloud.waiters`: polling until a resource reaches a state (instance v1 has no waiters);
- `cloud.tags`: the tags every resource the factory creates carries, and lookups by tag;
- `cloud.objectstorage`: buckets, streamed multipart uploads and deletions by prefix.

The same code runs against localcloud (SCW_API_URL set) and real Scaleway (real SCW_*
credentials, SCW_API_URL unset): nothing here branches on which cloud it talks to.
"""

from __future__ import annotations

from cloud.retries import CloudError, CloudTimeout

__all__ = ["CloudError", "CloudTimeout"]
