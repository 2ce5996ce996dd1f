"""firestore."""
