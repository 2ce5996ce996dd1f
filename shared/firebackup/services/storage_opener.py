"""Open a tenant's storage destination with its own (unsealed) credentials.

Everything goes through firebackup.storage.open_storage, so a destination gets the project's
own connectors (storage/s3.py, storage/gcs.py) with their timeouts and with their SDKs' retry
loops switched off, wrapped once in RetryingStorage: one retry loop, never two nested.
Credentials go to the connector, never into the URL; nothing here reads the environment.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from firebackup.errors import AccessDenied
from firebackup.storage import Storage, open_storage

_S3_KINDS = ("s3", "spaces", "s3compat")


class DestinationStorageOpener:
    """Callable as (kind, url, options, credentials) -> Storage, for a destination row.

    options may name "endpoint_url" and "region"; a destination that names none gets
    default_s3_endpoint (None: the AWS chain's) and default_region (None: the AWS chain's).
    """

    def __init__(self, *, default_s3_endpoint: str | None = None, default_region: str | None = "us-east-1"):
        self.default_s3_endpoint = default_s3_endpoint
        self.default_region = default_region

    def __call__(
        self, kind: str, url: str, options: Mapping[str, Any], credentials: Mapping[str, Any] | None
    ) -> Storage:
        opts: dict[str, Any] = {}
        if kind in _S3_KINDS:
            url = self._s3_url(kind, url, options)
            if credentials:
                opts["access_key_id"] = credentials.get("access_key_id")
                opts["secret_access_key"] = credentials.get("secret_access_key")
        elif kind == "gcs" and credentials:
            opts.update(_gcs_client(credentials))
        return open_storage(url, **opts)

    def _s3_url(self, kind: str, url: str, options: Mapping[str, Any]) -> str:
        """The URL with the destination's endpoint and region in its query (options win over
        the URL, the URL over the defaults); a Spaces URL takes only a region."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        given = {"region": options.get("region")}
        defaults = {"region": self.default_region}
        if kind != "spaces":
            given["endpoint"] = options.get("endpoint_url")
            defaults["endpoint"] = self.default_s3_endpoint
        for name, value in defaults.items():
            if value and name not in query:
                query[name] = value
        query.update({name: value for name, value in given.items() if value})
        return urlunsplit(parts._replace(query=urlencode(query)))

    def __repr__(self) -> str:
        return f"DestinationStorageOpener(default_s3_endpoint={self.default_s3_endpoint!r}, default_region={self.default_region!r})"


def _gcs_client(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """A google-cloud-storage client on the destination's service-account key, for GCSStorage
    (which applies its own timeouts and retry=None to every call it makes with it)."""
    try:
        from google.cloud.storage import Client
        from google.oauth2 import service_account

        info = credentials["service_account_key"]
        creds = service_account.Credentials.from_service_account_info(info)
        return {"client": Client(project=info.get("project_id"), credentials=creds)}
    except (ValueError, KeyError, TypeError, AttributeError):
        # The vendor's message could quote the key: say only what to do.
        raise AccessDenied("the GCS service-account key was rejected; upload a valid key") from None
