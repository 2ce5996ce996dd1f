"""Record encoding: Firestore Document bytes and auth users, framed in batches (codec.framing)."""
