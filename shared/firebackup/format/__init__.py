"""The on-storage format: chunks (format.chunk) and manifests (format.manifest); see docs/format.md."""
