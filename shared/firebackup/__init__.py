"""FireBackup: consistent, lossless, encrypted backups of Firestore and Firebase Auth."""

import logging

__version__ = "0.1.0"

# A library logs; the entry point decides where it goes. Without this, Python's last-resort
# handler would print our warnings on a CLI user's stderr beside the one-line error.
logging.getLogger("firebackup").addHandler(logging.NullHandler())
