# The seven metrics of runtime/metrics.py as log-based metrics: the functions run with
# FIREBACKUP_METRICS=log and write one JSON line per sample ({"metric": name, "value": v,
# "labels": {...}}). Counters count lines; histograms and gauges are distributions of the value
# (a gauge reads as the distribution's latest mean). An alert fires on any failed backup.

locals {
  job_buckets     = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400]
  request_buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
  size_buckets    = [1024, 1048576, 16777216, 268435456, 1073741824, 17179869184, 274877906944, 1099511627776]
  queue_buckets   = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]

  log_metrics = {
    backup_success_total         = { kind = "counter", labels = ["organization", "project", "kind"], buckets = [] }
    backup_failure_total         = { kind = "counter", labels = ["organization", "project", "kind"], buckets = [] }
    backup_duration_seconds      = { kind = "distribution", labels = ["organization", "kind", "outcome"], buckets = local.job_buckets }
    backup_size_bytes            = { kind = "distribution", labels = ["organization", "project"], buckets = local.size_buckets }
    queue_jobs_waiting           = { kind = "distribution", labels = ["kind"], buckets = local.queue_buckets }
    queue_jobs_active            = { kind = "distribution", labels = ["kind"], buckets = local.queue_buckets }
    api_request_duration_seconds = { kind = "distribution", labels = ["route", "outcome"], buckets = local.request_buckets }
  }
}

resource "google_logging_metric" "metrics" {
  for_each = local.log_metrics

  project = var.project_id
  name    = each.key
  filter  = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric=\"${each.key}\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.kind == "counter" ? "INT64" : "DISTRIBUTION"
    unit        = "1"

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }

  label_extractors = { for l in each.value.labels : l => "EXTRACT(jsonPayload.labels.${l})" }
  value_extractor  = each.value.kind == "counter" ? null : "EXTRACT(jsonPayload.value)"

  dynamic "bucket_options" {
    for_each = each.value.kind == "counter" ? [] : [each.value.buckets]
    content {
      explicit_buckets {
        bounds = bucket_options.value
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "backup_failures" {
  project      = var.project_id
  display_name = "FireBackup: backups failing"
  combiner     = "OR"

  conditions {
    display_name = "a backup job failed"

    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.metrics["backup_failure_total"].name}\" AND metric.label.kind=\"backup\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.organization"]
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    content   = "A FireBackup backup failed in the last 5 minutes. The job row says why (GET /v1/orgs/{org}/backups/{id}); logs: resource.type=cloud_run_revision AND jsonPayload.metric=\"backup_failure_total\"."
    mime_type = "text/markdown"
  }
}
