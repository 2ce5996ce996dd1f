"""Use cases behind the API: organizations, projects, destinations, backups, restores, schedules, webhooks."""
