output "api_url" {
  description = "The API's URL (append /v1/...)."
  value       = module.function["api"].url
}

output "function_urls" {
  description = "Every platform function's URL, by function name."
  value       = { for name, m in module.function : name => m.url }
}

output "service_accounts" {
  description = "Each identity's e-mail: one per function, plus tasks (Cloud Tasks' OIDC tokens) and ticks (the tick triggers)."
  value       = { for name, sa in google_service_account.identity : name => sa.email }
}

output "queues" {
  description = "Cloud Tasks queue names by kind (backup, restore, webhook)."
  value       = { for kind, q in google_cloud_tasks_queue.queues : kind => q.name }
}

output "topics" {
  description = "The tick topics' names."
  value       = [for t in google_pubsub_topic.ticks : t.name]
}

output "backup_bucket" {
  description = "The default backup bucket."
  value       = google_storage_bucket.backups.name
}

output "database_instance" {
  description = "Cloud SQL instance connection name (FIREBACKUP_CLOUDSQL_INSTANCE, for migrations)."
  value       = google_sql_database_instance.main.connection_name
}

output "secrets" {
  description = "Secret Manager secret ids by the variable they fill."
  value       = { for k, s in google_secret_manager_secret.secrets : k => s.secret_id }
}

output "kms_key" {
  description = "The platform's Cloud KMS key, or null when kms.enabled is false."
  value       = var.kms.enabled ? google_kms_crypto_key.sealing[0].id : null
}

output "pitr_capture" {
  description = "What modules/customer_pitr needs to run the capture in a customer project (pass it as its `capture` input)."
  value = {
    project_id            = var.project_id
    region                = var.region
    entry_point           = "pitr_capture"
    runtime               = var.python_runtime
    source_bucket         = google_storage_bucket.sources.name
    source_object         = google_storage_bucket_object.source["pitr_capture"].name
    service_account_email = google_service_account.identity["pitr_capture"].email
    environment           = local.function_env["pitr_capture"]
    secret_environment    = local.function_secrets["pitr_capture"]
    memory                = local.functions.pitr_capture.memory
    timeout_seconds       = local.functions.pitr_capture.timeout
    max_instances         = local.functions.pitr_capture.max
    concurrency           = local.functions.pitr_capture.concurrency
  }
}
