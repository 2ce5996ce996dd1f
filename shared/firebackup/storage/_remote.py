"""What the S3 and GCS connectors share: a client made on first use, keys under the prefix, exists()."""

from __future__ import annotations

import threading
from typing import Any

from firebackup.errors import ObjectNotFound
from firebackup.storage.base import ObjectInfo, check_key


class RemoteStorage:
    """Base for object-store connectors; subclasses set _root, _client, _lock and define _make_client()."""

    _root: str
    # The vendor SDK's client (boto3, google-cloud-storage): neither package ships types.
    _client: Any
    _lock: threading.Lock

    def _make_client(self) -> Any:
        raise NotImplementedError

    def stat(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The vendor client, created on first use (never at import or construction)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
            return True
        except ObjectNotFound:
            return False
