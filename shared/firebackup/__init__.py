"""FireBackup: consistent, lossless, encrypted backups of Firestore and Firebase Auth."""

__version__ = "0.1.0"
