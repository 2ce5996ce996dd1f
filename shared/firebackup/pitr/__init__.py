"""Point-in-time recovery: captured document writes (events), their sealing, and restore to an instant."""
