# The functions: each zipped from its vendored build folder (`python -m infra.build_functions`) and
# uploaded under a name holding the zip's hash, so any change to the code redeploys it.

resource "random_id" "source_bucket" {
  byte_length = 4
}

resource "google_storage_bucket" "sources" {
  # checkov:skip=CKV_GCP_62:Access logs of the source bucket would only record Cloud Build's reads of our own code.
  project                     = var.project_id
  name                        = "${var.name_prefix}-sources-${random_id.source_bucket.hex}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

data "archive_file" "source" {
  for_each = local.functions

  type        = "zip"
  source_dir  = "${local.build_dir}/${each.key}"
  output_path = "${path.root}/.terraform/firebackup-sources/${each.key}.zip"
}

resource "google_storage_bucket_object" "source" {
  for_each = local.functions

  bucket = google_storage_bucket.sources.name
  name   = "functions/${each.key}/${data.archive_file.source[each.key].output_sha256}.zip"
  source = data.archive_file.source[each.key].output_path
}

locals {
  function_env = { for name, f in local.functions : name => merge(
    { for k in concat(local.control_plane_env, f.env) : k => local.env_values[k] if !contains(local.per_identity_env, k) },
    { FIREBACKUP_CLOUDSQL_IAM_USER = trimsuffix(google_service_account.identity[name].email, ".gserviceaccount.com") },
  ) }
  function_secrets = { for name, f in local.functions : name => { for s in f.secrets : s => google_secret_manager_secret.secrets[s].secret_id } }
}

module "function" {
  source   = "./modules/function"
  for_each = local.platform_functions

  project_id            = var.project_id
  region                = var.region
  name                  = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  entry_point           = each.key
  runtime               = var.python_runtime
  source_bucket         = google_storage_bucket.sources.name
  source_object         = google_storage_bucket_object.source[each.key].name
  service_account_email = google_service_account.identity[each.key].email
  environment           = local.function_env[each.key]
  secret_environment    = local.function_secrets[each.key]
  memory                = try(var.function_sizes[each.key].memory, each.value.memory)
  cpu                   = try(var.function_sizes[each.key].cpu, each.value.cpu)
  timeout_seconds       = try(var.function_sizes[each.key].timeout, each.value.timeout)
  max_instances         = try(var.function_sizes[each.key].max_instances, each.value.max)
  min_instances         = try(var.function_sizes[each.key].min_instances, each.value.min)
  concurrency           = each.value.concurrency
  vpc_connector         = var.vpc_connector
  # The tick functions take Eventarc's internal pushes only. The api and the workers stay reachable
  # from Google's front end (Cloud Tasks dispatches through it): for the workers, IAM admits the tasks
  # identity alone, and the worker checks the OIDC token's audience and account once more.
  ingress          = each.value.topic == null ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
  trigger_topic    = each.value.topic == null ? null : google_pubsub_topic.ticks[each.value.topic].id
  trigger_identity = each.value.topic == null ? null : google_service_account.identity["ticks"].email
  labels           = local.labels

  # Each function reads its secrets at start-up: their first versions and grants come first.
  depends_on = [google_project_service.apis, google_secret_manager_secret_version.initial, google_secret_manager_secret_iam_member.access]
}

# The api answers anyone: it authenticates every request itself (Firebase ID tokens, API tokens).
resource "google_cloud_run_v2_service_iam_member" "api_public" {
  project  = var.project_id
  location = var.region
  name     = module.function["api"].service_name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Customer projects build the capture from its source object (modules/customer_pitr): their Cloud
# Functions service agent and the build's identity (the default compute account in projects made
# since 2024, the legacy Cloud Build account before) read it.
resource "google_storage_bucket_iam_member" "pitr_customer_source" {
  for_each = toset(flatten([for p in var.pitr_customer_projects : [
    "serviceAccount:service-${p}@gcf-admin-robot.iam.gserviceaccount.com",
    "serviceAccount:${p}-compute@developer.gserviceaccount.com",
    "serviceAccount:${p}@cloudbuild.gserviceaccount.com",
  ]]))

  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = each.value
}
