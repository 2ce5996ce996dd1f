# FireBackup on Google Cloud: one apply turns an empty project into the running platform.
# The tables below are held to the code by infra/terraform_check.py (functions, their environment,
# secrets, queues, topics and every identity's roles); change both together.

locals {
  firebase_project = coalesce(var.firebase_project_id, var.project_id)
  build_dir        = coalesce(var.build_dir, "${path.module}/../build/functions")
  labels           = merge({ app = "firebackup" }, var.labels)

  apis = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "sqladmin.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudkms.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "firestore.googleapis.com",
    "identitytoolkit.googleapis.com",
    "storage.googleapis.com",
  ]

  # One entry per function in infra/functions.py. env: what the function reads beyond the control
  # plane's (control_plane_env); secrets: the Secret Manager ones it reads; timeout in seconds (at most
  # 540 for the Pub/Sub-triggered ones); concurrency: requests an instance serves at once (1 but for
  # the capture, which shares one connection among all it serves: docs/database.md). placement
  # "customer": the PITR capture runs in each
  # customer's project (modules/customer_pitr), since Eventarc delivers Firestore events only to a
  # destination in the database's own project.
  functions = {
    api = {
      signature   = "http"
      placement   = "platform"
      topic       = null
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 60
      max         = 20
      min         = 0
      concurrency = 1
      env = [
        "FIREBACKUP_OAUTH_CLIENT_ID", "FIREBACKUP_OAUTH_TOKEN_URI", "FIREBACKUP_OAUTH_REDIRECT_URI",
        "FIREBACKUP_MAX_REQUEST_BYTES", "FIREBACKUP_ID_TOKEN_CACHE_SECONDS", "FIREBACKUP_TRUSTED_PROXY_HOPS",
        "FIREBACKUP_RATE_LIMIT_PER_ADDRESS", "FIREBACKUP_RATE_LIMIT_PER_TOKEN", "FIREBACKUP_RATE_LIMIT_STORAGE",
        "FIREBACKUP_API_TOKEN_DAYS", "FIREBACKUP_API_TOKEN_MAX_DAYS",
        "FIREBACKUP_FIREBASE_WEB_API_KEY", "FIREBACKUP_DASHBOARD_GOOGLE_SIGN_IN",
      ]
      secrets = ["FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_WORKER_SECRET", "FIREBACKUP_OAUTH_CLIENT_SECRET"]
    }
    backup_worker = {
      signature   = "http"
      placement   = "platform"
      topic       = null
      memory      = "2Gi"
      cpu         = "1"
      timeout     = 1800
      max         = 50
      min         = 0
      concurrency = 1
      env         = local.worker_env
      secrets     = local.worker_secrets
    }
    restore_worker = {
      signature   = "http"
      placement   = "platform"
      topic       = null
      memory      = "2Gi"
      cpu         = "1"
      timeout     = 1800
      max         = 20
      min         = 0
      concurrency = 1
      env         = local.worker_env
      secrets     = local.worker_secrets
    }
    scheduler = {
      signature   = "cloudevent"
      placement   = "platform"
      topic       = "firebackup-scheduler-tick"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 120
      max         = 1
      min         = 0
      concurrency = 1
      env         = []
      secrets     = ["FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_WORKER_SECRET"]
    }
    maintenance = {
      signature   = "cloudevent"
      placement   = "platform"
      topic       = "firebackup-maintenance-tick"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 540
      max         = 1
      min         = 0
      concurrency = 1
      env = [
        "FIREBACKUP_REAP_AFTER_SECONDS",
        "FIREBACKUP_AUDIT_PARTITIONS_AHEAD", "FIREBACKUP_AUDIT_RETENTION_MONTHS", "FIREBACKUP_AUDIT_ARCHIVE_URL",
        "FIREBACKUP_PITR_COMPACT_AFTER_SECONDS", "FIREBACKUP_PITR_SEGMENT_CHANGES",
      ]
      secrets = ["FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_WORKER_SECRET"]
    }
    pitr_capture = {
      signature   = "cloudevent"
      placement   = "customer"
      topic       = null
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 300
      max         = 20
      min         = 0
      concurrency = 80
      env         = ["FIREBACKUP_OAUTH_CLIENT_ID", "FIREBACKUP_OAUTH_TOKEN_URI", "FIREBACKUP_PITR_CONFIG_CACHE_SECONDS"]
      secrets     = ["FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_OAUTH_CLIENT_SECRET"]
    }
  }
  # The two workers read the same: a connected project's credentials and how a task runs.
  worker_env = [
    "FIREBACKUP_OAUTH_CLIENT_ID", "FIREBACKUP_OAUTH_TOKEN_URI",
    "FIREBACKUP_CHUNK_DOCS", "FIREBACKUP_CHUNKS_PER_TASK", "FIREBACKUP_LEASE_SECONDS",
  ]
  worker_secrets     = ["FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_WORKER_SECRET", "FIREBACKUP_OAUTH_CLIENT_SECRET"]
  platform_functions = { for name, f in local.functions : name => f if f.placement == "platform" }

  # What every function reads (it builds the control plane); the secret ones are in each function's secrets.
  control_plane_env = [
    "FIREBACKUP_CLOUDSQL_INSTANCE", "FIREBACKUP_CLOUDSQL_IAM_USER", "FIREBACKUP_CLOUDSQL_DATABASE",
    "FIREBACKUP_KMS_KEY", "FIREBACKUP_FIREBASE_PROJECT", "FIREBACKUP_GCP_PROJECT", "FIREBACKUP_METRICS",
    "FIREBACKUP_QUEUE", "FIREBACKUP_TASKS_PROJECT", "FIREBACKUP_TASKS_LOCATION",
    "FIREBACKUP_TASKS_BACKUP_QUEUE", "FIREBACKUP_TASKS_BACKUP_LIMITS",
    "FIREBACKUP_TASKS_RESTORE_QUEUE", "FIREBACKUP_TASKS_RESTORE_LIMITS",
    "FIREBACKUP_TASKS_WEBHOOK_QUEUE", "FIREBACKUP_TASKS_WEBHOOK_LIMITS",
    "FIREBACKUP_BACKUP_WORKER_URL", "FIREBACKUP_RESTORE_WORKER_URL", "FIREBACKUP_TASKS_SERVICE_ACCOUNT",
    "FIREBACKUP_DB_POOL_SIZE", "FIREBACKUP_DB_MAX_OVERFLOW", "FIREBACKUP_DB_POOL_TIMEOUT", "FIREBACKUP_DB_POOL_RECYCLE",
  ]
  # Differs per function: each logs in to Cloud SQL as its own service account.
  per_identity_env = ["FIREBACKUP_CLOUDSQL_IAM_USER"]

  # A gen2 function's cloudfunctions.net URL is known before it exists, so the workers' URLs (also
  # the audience of the OIDC tokens they accept) need no second apply.
  function_urls = { for name, f in local.functions : name => "https://${var.region}-${var.project_id}.cloudfunctions.net/${var.name_prefix}-${replace(name, "_", "-")}" }

  env_values = {
    FIREBACKUP_CLOUDSQL_INSTANCE      = google_sql_database_instance.main.connection_name
    FIREBACKUP_CLOUDSQL_DATABASE      = google_sql_database.main.name
    FIREBACKUP_KMS_KEY                = var.kms.enabled ? google_kms_crypto_key.sealing[0].id : ""
    FIREBACKUP_FIREBASE_PROJECT       = local.firebase_project
    FIREBACKUP_GCP_PROJECT            = var.project_id
    FIREBACKUP_METRICS                = "log"
    FIREBACKUP_QUEUE                  = "cloudtasks"
    FIREBACKUP_TASKS_PROJECT          = var.project_id
    FIREBACKUP_TASKS_LOCATION         = var.region
    FIREBACKUP_TASKS_BACKUP_QUEUE     = google_cloud_tasks_queue.queues["backup"].name
    FIREBACKUP_TASKS_BACKUP_LIMITS    = local.queue_limits["backup"]
    FIREBACKUP_TASKS_RESTORE_QUEUE    = google_cloud_tasks_queue.queues["restore"].name
    FIREBACKUP_TASKS_RESTORE_LIMITS   = local.queue_limits["restore"]
    FIREBACKUP_TASKS_WEBHOOK_QUEUE    = google_cloud_tasks_queue.queues["webhook"].name
    FIREBACKUP_TASKS_WEBHOOK_LIMITS   = local.queue_limits["webhook"]
    FIREBACKUP_BACKUP_WORKER_URL      = local.function_urls["backup_worker"]
    FIREBACKUP_RESTORE_WORKER_URL     = local.function_urls["restore_worker"]
    FIREBACKUP_TASKS_SERVICE_ACCOUNT  = google_service_account.identity["tasks"].email
    FIREBACKUP_OAUTH_CLIENT_ID        = coalesce(var.oauth_client_id, "")
    FIREBACKUP_OAUTH_TOKEN_URI        = "https://oauth2.googleapis.com/token"
    FIREBACKUP_OAUTH_REDIRECT_URI     = coalesce(var.oauth_redirect_uri, "")
    FIREBACKUP_MAX_REQUEST_BYTES      = "1048576"
    FIREBACKUP_ID_TOKEN_CACHE_SECONDS = "60"
    FIREBACKUP_TRUSTED_PROXY_HOPS     = tostring(var.api_settings.trusted_proxy_hops)
    FIREBACKUP_RATE_LIMIT_PER_ADDRESS = var.api_settings.rate_limit_per_address
    FIREBACKUP_RATE_LIMIT_PER_TOKEN   = var.api_settings.rate_limit_per_token
    # Per instance: a shared store (Memorystore) would make the limits global; one instance's share is enough.
    FIREBACKUP_RATE_LIMIT_STORAGE       = "memory://"
    FIREBACKUP_API_TOKEN_DAYS           = tostring(var.api_settings.api_token_days)
    FIREBACKUP_API_TOKEN_MAX_DAYS       = tostring(var.api_settings.api_token_max_days)
    FIREBACKUP_FIREBASE_WEB_API_KEY     = var.dashboard.firebase_web_api_key
    FIREBACKUP_DASHBOARD_GOOGLE_SIGN_IN = var.dashboard.google_sign_in ? "1" : "0"
    FIREBACKUP_CHUNK_DOCS               = "0"
    FIREBACKUP_CHUNKS_PER_TASK          = "1"
    FIREBACKUP_LEASE_SECONDS            = "600"
    FIREBACKUP_REAP_AFTER_SECONDS       = "1800"
    # docs/database.md: each instance runs one request at a time (max_instance_request_concurrency = 1),
    # so one connection plus one spare; check "connection_budget" holds the sum to the server's limit.
    FIREBACKUP_DB_POOL_SIZE               = tostring(var.db_pool.size)
    FIREBACKUP_DB_MAX_OVERFLOW            = tostring(var.db_pool.max_overflow)
    FIREBACKUP_DB_POOL_TIMEOUT            = tostring(var.db_pool.timeout)
    FIREBACKUP_DB_POOL_RECYCLE            = tostring(var.db_pool.recycle)
    FIREBACKUP_AUDIT_PARTITIONS_AHEAD     = tostring(var.audit_log.partitions_ahead)
    FIREBACKUP_AUDIT_RETENTION_MONTHS     = tostring(var.audit_log.retention_months)
    FIREBACKUP_AUDIT_ARCHIVE_URL          = var.audit_log.archive_url
    FIREBACKUP_PITR_CONFIG_CACHE_SECONDS  = "30"
    FIREBACKUP_PITR_COMPACT_AFTER_SECONDS = "3600"
    FIREBACKUP_PITR_SEGMENT_CHANGES       = "100000"
  }
}

resource "google_project_service" "apis" {
  for_each = toset(local.apis)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# docs/database.md's formula: every instance's pool at its fullest stays under the server's limit,
# less the superuser slots and a reserve for migrations, maintenance and an operator.
check "connection_budget" {
  assert {
    condition = sum([for name, f in local.platform_functions :
      try(var.function_sizes[name].max_instances, f.max) * (var.db_pool.size + var.db_pool.max_overflow)
    ]) <= var.db_pool.server_max_connections - 3 - var.db_pool.reserve
    error_message = "The functions' connection pools can exceed Cloud SQL's max_connections: lower max_instances or db_pool, or raise db_pool.server_max_connections (docs/database.md)."
  }
}
