# Optional: the platform's own Cloud KMS key. It seals the platform's secrets (FIREBACKUP_KMS_KEY,
# BYOK sealing), wraps backup keys, and encrypts the default bucket, the tick topics and the secrets
# (CMEK); the Google service agents that encrypt for us get encrypt/decrypt on it and nothing else.

resource "google_kms_key_ring" "main" {
  count = var.kms.enabled ? 1 : 0

  project  = var.project_id
  name     = "${var.name_prefix}-keys"
  location = var.region

  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key" "sealing" {
  count = var.kms.enabled ? 1 : 0

  name            = "${var.name_prefix}-sealing"
  key_ring        = google_kms_key_ring.main[0].id
  rotation_period = var.kms.rotation_period
  purpose         = "ENCRYPT_DECRYPT"
  labels          = local.labels

  lifecycle {
    prevent_destroy = true
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "gcs" {
  count   = var.kms.enabled ? 1 : 0
  project = var.project_id
}

resource "google_project_service_identity" "secretmanager" {
  count    = var.kms.enabled ? 1 : 0
  provider = google-beta

  project = var.project_id
  service = "secretmanager.googleapis.com"
}

resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count = var.kms.enabled ? 1 : 0

  crypto_key_id = google_kms_crypto_key.sealing[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  count = var.kms.enabled ? 1 : 0

  crypto_key_id = google_kms_crypto_key.sealing[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_kms_crypto_key_iam_member" "secretmanager_agent" {
  count = var.kms.enabled ? 1 : 0

  crypto_key_id = google_kms_crypto_key.sealing[0].id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = google_project_service_identity.secretmanager[0].member
}
