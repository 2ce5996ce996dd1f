# One service account per function, plus the identity Cloud Tasks signs tasks with and the one the
# tick triggers push with. Every role any of them holds is in `roles` below, and docs/deployment.md
# lists the same table (infra/terraform_check.py holds them equal). "role@scope" grants on one
# resource; a bare role is project-wide.

locals {
  identities = {
    api            = "FireBackup API"
    backup_worker  = "FireBackup backup worker"
    restore_worker = "FireBackup restore worker"
    scheduler      = "FireBackup scheduler tick"
    maintenance    = "FireBackup maintenance tick"
    pitr_capture   = "FireBackup PITR capture"
    tasks          = "FireBackup Cloud Tasks OIDC identity"
    ticks          = "FireBackup tick trigger identity"
    migrate        = "FireBackup schema migrations (operators impersonate it)"
  }

  # The api cannot read backup objects or Firestore data (no storage or datastore role); the workers
  # cannot manage IAM; only the workers' and enqueuers' identities may act as the tasks identity;
  # only the tasks identity may invoke the workers. Secret access follows each function's secrets.
  roles = {
    api = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudtasks.enqueuer",
      "roles/firebaseauth.viewer", "roles/iam.serviceAccountUser@tasks", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
    ]
    backup_worker = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudtasks.enqueuer",
      "roles/iam.serviceAccountUser@tasks", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
      "roles/storage.objectAdmin@bucket",
    ]
    restore_worker = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudtasks.enqueuer",
      "roles/iam.serviceAccountUser@tasks", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
      "roles/storage.objectViewer@bucket",
    ]
    scheduler = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudtasks.enqueuer",
      "roles/iam.serviceAccountUser@tasks", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
    ]
    maintenance = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudtasks.enqueuer",
      "roles/iam.serviceAccountUser@tasks", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
      "roles/storage.objectAdmin@bucket",
    ]
    pitr_capture = [
      "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/cloudkms.cryptoKeyEncrypterDecrypter@kms",
    ]
    tasks   = ["roles/run.invoker@backup_worker", "roles/run.invoker@restore_worker"]
    ticks   = ["roles/run.invoker@scheduler", "roles/run.invoker@maintenance"]
    migrate = ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]
  }

  grants = flatten([for who, list in local.roles : [for r in list : {
    key     = "${who}/${r}"
    account = who
    role    = split("@", r)[0]
    scope   = length(split("@", r)) > 1 ? split("@", r)[1] : "project"
  }]])
  project_grants = { for g in local.grants : g.key => g if g.scope == "project" }
  bucket_grants  = { for g in local.grants : g.key => g if g.scope == "bucket" }
  kms_grants     = { for g in local.grants : g.key => g if g.scope == "kms" && var.kms.enabled }
  actas_grants   = { for g in local.grants : g.key => g if g.scope == "tasks" }
  invoker_grants = { for g in local.grants : g.key => g if contains(keys(local.platform_functions), g.scope) }

  # Each secret to exactly the functions whose `secrets` name it.
  secret_grants = merge([for name, f in local.functions : { for s in f.secrets : "${name}/${s}" => { account = name, secret = s } }]...)
}

resource "google_service_account" "identity" {
  for_each = local.identities

  project      = var.project_id
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = each.value
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "roles" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

resource "google_storage_bucket_iam_member" "roles" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.backups.name
  role   = each.value.role
  member = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

resource "google_kms_crypto_key_iam_member" "roles" {
  for_each = local.kms_grants

  crypto_key_id = google_kms_crypto_key.sealing[0].id
  role          = each.value.role
  member        = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

resource "google_service_account_iam_member" "act_as_tasks" {
  for_each = local.actas_grants

  service_account_id = google_service_account.identity["tasks"].name
  role               = each.value.role
  member             = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.invoker_grants

  project  = var.project_id
  location = var.region
  name     = module.function[each.value.scope].service_name
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

resource "google_secret_manager_secret_iam_member" "access" {
  for_each = local.secret_grants

  project   = var.project_id
  secret_id = google_secret_manager_secret.secrets[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.identity[each.value.account].email}"
}

# Customer projects running the PITR capture: their Cloud Functions and Cloud Run service agents,
# and whoever applies modules/customer_pitr there, deploy it as the capture identity.
resource "google_service_account_iam_member" "pitr_customer_act_as" {
  for_each = setunion(var.pitr_customer_deployers, flatten([for p in var.pitr_customer_projects : [
    "serviceAccount:service-${p}@gcf-admin-robot.iam.gserviceaccount.com",
    "serviceAccount:service-${p}@serverless-robot-prod.iam.gserviceaccount.com",
  ]]))

  service_account_id = google_service_account.identity["pitr_capture"].name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
