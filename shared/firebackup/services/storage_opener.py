"""Open a storage destination with its own (unsealed) credentials, through firebackup.storage.open_storage."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from firebackup.errors import AccessDenied


def open_destination_storage(kind: str, url: str, options: dict, credentials: dict | None) -> Any:
    """Credentials go into a client object handed to the backend; they never enter the URL."""
    from firebackup.storage import open_storage

    extra: dict[str, str] = {}
    if options.get("endpoint_url"):
        extra["endpoint"] = options["endpoint_url"]
    if options.get("region"):
        extra["region"] = options["region"]
    if extra and kind in ("s3", "spaces", "s3compat"):
        parts = urlsplit(url)
        query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
        url = urlunsplit(parts._replace(query=query))
    opts: dict[str, Any] = {}
    if credentials and kind in ("s3", "spaces", "s3compat"):
        import boto3

        endpoint = options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
        if kind == "spaces" and not endpoint:
            endpoint = f"https://{options.get('region', 'nyc3')}.digitaloceanspaces.com"
        opts["client"] = boto3.client(
            "s3", aws_access_key_id=credentials.get("access_key_id"),
            aws_secret_access_key=credentials.get("secret_access_key"),
            endpoint_url=endpoint, region_name=options.get("region") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
    elif credentials and kind == "gcs":
        try:
            from google.cloud import storage as gcs
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_info(credentials["service_account_key"])
            opts["client"] = gcs.Client(project=credentials["service_account_key"].get("project_id"), credentials=creds)
        except (ValueError, KeyError) as e:
            raise AccessDenied("the GCS service-account key was rejected; upload a valid key") from e
    return open_storage(url, **opts)
