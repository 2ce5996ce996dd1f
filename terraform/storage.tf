# The default backup bucket: organizations may use their own destinations; this one is where a
# destination without its own bucket goes. Uniform access, versioning, and a lifecycle rule that
# removes replaced or deleted objects after backup_noncurrent_days (retention itself is GFS in
# services/retention.py, applied by maintenance).

resource "random_id" "bucket_suffix" {
  byte_length = 4
}

resource "google_storage_bucket" "backups" {
  # checkov:skip=CKV_GCP_62:Data access audit logs (enable them for storage.googleapis.com) record object access; a second access-log bucket would duplicate them.
  project                     = var.project_id
  name                        = "${var.name_prefix}-backups-${random_id.bucket_suffix.hex}"
  location                    = coalesce(var.bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.backup_noncurrent_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "encryption" {
    for_each = var.kms.enabled ? [1] : []
    content {
      default_kms_key_name = google_kms_crypto_key.sealing[0].id
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.storage_agent]
}
