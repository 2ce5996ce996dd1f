# The secrets settings.py reads (its repr=False fields), one Secret Manager secret each, readable
# only by the functions whose `secrets` name them (iam.tf). First versions are generated here, so
# they live in the Terraform state: keep the state in a bucket only operators can read.

locals {
  secrets = {
    FIREBACKUP_MASTER_KEY          = "master-key"
    FIREBACKUP_OLD_MASTER_KEYS     = "old-master-keys"
    FIREBACKUP_WORKER_SECRET       = "worker-secret"
    FIREBACKUP_OAUTH_CLIENT_SECRET = "oauth-client-secret"
  }
  # Secret Manager refuses an empty payload; a blank one reads as "none" (settings.py strips it).
  secret_initial = {
    FIREBACKUP_MASTER_KEY          = random_bytes.master_key.base64
    FIREBACKUP_OLD_MASTER_KEYS     = " "
    FIREBACKUP_WORKER_SECRET       = random_password.worker_secret.result
    FIREBACKUP_OAUTH_CLIENT_SECRET = coalesce(var.oauth_client_secret, " ")
  }
}

resource "random_bytes" "master_key" {
  length = 32
}

resource "random_password" "worker_secret" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "secrets" {
  for_each = local.secrets

  project   = var.project_id
  secret_id = "${var.name_prefix}-${each.value}"
  labels    = local.labels

  replication {
    user_managed {
      replicas {
        location = var.region
        dynamic "customer_managed_encryption" {
          for_each = var.kms.enabled ? [1] : []
          content {
            kms_key_name = google_kms_crypto_key.sealing[0].id
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis, google_kms_crypto_key_iam_member.secretmanager_agent]
}

resource "google_secret_manager_secret_version" "initial" {
  for_each = local.secrets

  secret      = google_secret_manager_secret.secrets[each.key].id
  secret_data = local.secret_initial[each.key]

  # Rotation adds versions outside Terraform (docs/deployment.md); Terraform never overwrites them.
  lifecycle {
    ignore_changes = [secret_data]
  }
}
