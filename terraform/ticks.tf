# Cloud Scheduler publishes a tick a minute (scheduler) and an hourly one (maintenance) to these
# topics (settings.py's scheduler_topic / maintenance_topic); an Eventarc Pub/Sub trigger on each
# invokes its function as the ticks identity. Same jobs as services/ticks.py would create.

locals {
  ticks = {
    "firebackup-scheduler-tick" = {
      job         = "firebackup-scheduler"
      schedule    = "* * * * *"
      description = "FireBackup: start the schedules that are due (every minute)"
    }
    "firebackup-maintenance-tick" = {
      job         = "firebackup-maintenance"
      schedule    = "17 * * * *"
      description = "FireBackup: retention, reaper, webhook redelivery (hourly)"
    }
  }
}

resource "google_pubsub_topic" "ticks" {
  for_each = local.ticks

  project = var.project_id
  name    = each.key
  labels  = local.labels
  # A tick older than an hour is stale: the next one asks the same question.
  message_retention_duration = "3600s"
  kms_key_name               = var.kms.enabled ? google_kms_crypto_key.sealing[0].id : null

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_cloud_scheduler_job" "ticks" {
  for_each = local.ticks

  project     = var.project_id
  region      = var.region
  name        = each.value.job
  description = each.value.description
  schedule    = each.value.schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.ticks[each.key].id
    data       = base64encode(jsonencode({ tick = each.value.job }))
  }

  depends_on = [google_project_service.apis]
}
