# The PITR capture in a customer's project. Eventarc delivers Firestore events only to a destination
# in the database's own project, so FireBackup's `pitr_capture` function runs here, built from
# FireBackup's published source and running as FireBackup's capture identity; it writes to
# FireBackup's database and reads FireBackup's secrets there. This project grants that identity only
# read access to Firestore (to complete an event too large to carry its document), and a trigger
# identity of its own may invoke the capture and nothing else.

locals {
  region      = coalesce(var.region, var.capture.region)
  capture_sa  = "serviceAccount:${var.capture.service_account_email}"
  service_ids = ["eventarc.googleapis.com", "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com", "firestore.googleapis.com"]
}

resource "google_project_service" "apis" {
  for_each = toset(local.service_ids)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "capture" {
  source = "../function"

  project_id            = var.project_id
  region                = local.region
  name                  = "firebackup-pitr-capture"
  entry_point           = var.capture.entry_point
  runtime               = var.capture.runtime
  source_bucket         = var.capture.source_bucket
  source_object         = var.capture.source_object
  service_account_email = var.capture.service_account_email
  environment           = var.capture.environment
  secret_environment    = var.capture.secret_environment
  secret_project_id     = var.capture.project_id
  memory                = var.capture.memory
  timeout_seconds       = var.capture.timeout_seconds
  max_instances         = var.capture.max_instances
  # Events in flight share commits (services/pitr.py GroupCommit) over one database connection.
  concurrency = var.capture.concurrency
  # Eventarc is the only caller.
  ingress = "ALLOW_INTERNAL_ONLY"

  depends_on = [google_project_service.apis]
}

# Reading a document at an event's update_time when the event was too large to carry it.
resource "google_project_iam_member" "capture_reads_firestore" {
  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = local.capture_sa
}

resource "google_service_account" "trigger" {
  project      = var.project_id
  account_id   = "firebackup-pitr-trigger"
  display_name = "FireBackup PITR trigger identity (Eventarc)"
}

resource "google_project_iam_member" "trigger_receives_events" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_capture" {
  project  = var.project_id
  location = local.region
  name     = module.capture.service_name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# One trigger per database: every document write at any depth, delivered as protobuf.
resource "google_eventarc_trigger" "written" {
  for_each = var.databases

  project                 = var.project_id
  location                = each.value.location
  name                    = "firebackup-pitr-${substr(sha256(each.key), 0, 12)}"
  service_account         = google_service_account.trigger.email
  event_data_content_type = "application/protobuf"

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.firestore.document.v1.written"
  }
  matching_criteria {
    attribute = "database"
    value     = each.key
  }
  matching_criteria {
    attribute = "document"
    value     = "{document=**}"
    operator  = "match-path-pattern"
  }

  destination {
    cloud_run_service {
      service = module.capture.service_name
      region  = local.region
    }
  }

  depends_on = [google_project_iam_member.trigger_receives_events, google_cloud_run_v2_service_iam_member.trigger_invokes_capture]
}
