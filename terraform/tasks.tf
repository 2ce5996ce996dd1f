# One Cloud Tasks queue per kind of task, with the rate limits and retries of settings.py's
# backup_tasks / restore_tasks / webhook_tasks; the functions get the same values as
# FIREBACKUP_TASKS_<KIND>_LIMITS, so a worker gives up after the queue's own last attempt.

locals {
  queues = {
    backup = {
      name        = "firebackup-backup"
      rate        = 100
      concurrent  = 50
      attempts    = 50
      min_backoff = 1
      max_backoff = 300
    }
    restore = {
      name        = "firebackup-restore"
      rate        = 50
      concurrent  = 20
      attempts    = 50
      min_backoff = 1
      max_backoff = 300
    }
    webhook = {
      name        = "firebackup-webhooks"
      rate        = 10
      concurrent  = 10
      attempts    = 5
      min_backoff = 10
      max_backoff = 3600
    }
  }
  queue_limits = { for kind, q in local.queues : kind => "rate=${q.rate},concurrent=${q.concurrent},attempts=${q.attempts},min_backoff=${q.min_backoff},max_backoff=${q.max_backoff}" }
}

resource "google_cloud_tasks_queue" "queues" {
  for_each = local.queues

  project  = var.project_id
  location = var.region
  name     = each.value.name

  rate_limits {
    max_dispatches_per_second = each.value.rate
    max_concurrent_dispatches = each.value.concurrent
  }

  retry_config {
    max_attempts  = each.value.attempts
    min_backoff   = "${each.value.min_backoff}s"
    max_backoff   = "${each.value.max_backoff}s"
    max_doublings = 16
  }

  stackdriver_logging_config {
    sampling_ratio = 0.1
  }

  depends_on = [google_project_service.apis]
}
