variable "project_id" {
  type        = string
  description = "The Google Cloud project FireBackup runs in (its functions, database, queues and default bucket)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6 to 30 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, Cloud SQL, the task queues, the scheduler jobs and the default bucket."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1 or europe-west1."
  }
}

variable "firebase_project_id" {
  type        = string
  description = "The Firebase project whose Auth signs FireBackup's users in; null: project_id."
  default     = null
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (service accounts, functions, secrets, the database instance)."
  default     = "firebackup"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2 to 15 lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "build_dir" {
  type        = string
  description = "Where `python -m infra.build_functions` wrote one vendored folder per function; null: <repo>/build/functions."
  default     = null
}

variable "python_runtime" {
  type        = string
  description = "Cloud Functions runtime; the vendored requirements are pinned where the build ran, so match that Python."
  default     = "python311"

  validation {
    condition     = contains(["python311", "python312", "python313"], var.python_runtime)
    error_message = "python_runtime must be python311, python312 or python313 (pyproject.toml requires Python >= 3.11)."
  }
}

variable "function_sizes" {
  type = map(object({
    memory        = string
    cpu           = string
    timeout       = number
    max_instances = number
    min_instances = number
  }))
  description = "Overrides of a function's memory, CPU, timeout (seconds), max and min instances, by function name."
  default     = {}

  validation {
    condition     = alltrue([for s in values(var.function_sizes) : s.timeout >= 1 && s.timeout <= 3600 && s.max_instances >= 1 && s.min_instances >= 0])
    error_message = "function_sizes: timeout must be 1 to 3600 seconds, max_instances at least 1, min_instances at least 0."
  }
}

variable "vpc_connector" {
  type        = string
  description = "Serverless VPC Access connector (projects/P/locations/R/connectors/C) the functions reach a private Cloud SQL through; null: none."
  default     = null
}

variable "sql_private_network" {
  type        = string
  description = "VPC network self link giving Cloud SQL a private IP (functions reach it through vpc_connector); null: none."
  default     = null
}

variable "sql_public_ip" {
  type        = bool
  description = "Keep Cloud SQL's public IP (no authorized networks: only IAM-authorized Cloud SQL connector connections). The functions' connector dials the public IP, so turn it off only with a private network and a connector set to dial it."
  default     = true

  validation {
    condition     = var.sql_public_ip || var.sql_private_network != null
    error_message = "sql_public_ip = false needs sql_private_network: the instance would have no IP at all."
  }
}

variable "sql_tier" {
  type        = string
  description = "Cloud SQL machine tier."
  default     = "db-custom-1-3840"
}

variable "sql_availability" {
  type        = string
  description = "ZONAL (one zone) or REGIONAL (a standby in another zone)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.sql_availability)
    error_message = "sql_availability must be ZONAL or REGIONAL."
  }
}

variable "sql_disk_size_gb" {
  type        = number
  description = "Initial Cloud SQL disk size in GB (it grows automatically)."
  default     = 10

  validation {
    condition     = var.sql_disk_size_gb >= 10
    error_message = "sql_disk_size_gb must be at least 10."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the database instance and the default bucket from terraform destroy; turn off only to tear down."
  default     = true
}

variable "kms" {
  type = object({
    enabled         = bool
    rotation_period = string
  })
  description = "An own Cloud KMS key ring and key: seals the platform's secrets (FIREBACKUP_KMS_KEY) and encrypts the default bucket (CMEK)."
  default = {
    enabled         = false
    rotation_period = "7776000s"
  }

  validation {
    condition     = can(regex("^[0-9]+s$", var.kms.rotation_period))
    error_message = "kms.rotation_period must be a number of seconds such as 7776000s."
  }
}

variable "bucket_location" {
  type        = string
  description = "Location of the default backup bucket (a region, dual-region or multi-region); null: region."
  default     = null
}

variable "backup_noncurrent_days" {
  type        = number
  description = "Days a deleted or replaced object of the default bucket is kept as a noncurrent version before it is removed."
  default     = 30

  validation {
    condition     = var.backup_noncurrent_days >= 1
    error_message = "backup_noncurrent_days must be at least 1."
  }
}

variable "oauth_client_id" {
  type        = string
  description = "OAuth client id for connecting customer projects by OAuth; null: connections by service-account key only."
  default     = null
}

variable "oauth_redirect_uri" {
  type        = string
  description = "Where Google sends the user back after consent (the dashboard page that completes the connection); null: none."
  default     = null
}

variable "dashboard" {
  type = object({
    firebase_web_api_key = optional(string, "")
    google_sign_in       = optional(bool, false)
  })
  description = "The dashboard's sign-in: the Firebase project's Web API key (public by Firebase's design) and whether to offer Sign in with Google."
  default     = {}
}

variable "db_pool" {
  type = object({
    size                   = optional(number, 1)
    max_overflow           = optional(number, 1)
    timeout                = optional(number, 10)
    recycle                = optional(number, 1800)
    server_max_connections = optional(number, 400)
    reserve                = optional(number, 10)
  })
  description = "Each function instance's database pool (size + max_overflow connections at most) and the server's max_connections flag; the sum over max instances must fit (docs/database.md)."
  default     = {}
  validation {
    condition     = var.db_pool.size >= 1 && var.db_pool.max_overflow >= 0 && var.db_pool.timeout > 0 && var.db_pool.server_max_connections >= 25
    error_message = "db_pool: size at least 1, max_overflow at least 0, timeout above 0, server_max_connections at least 25."
  }
}

variable "audit_log" {
  type = object({
    partitions_ahead = optional(number, 3)
    retention_months = optional(number, 0)
    archive_url      = optional(string, "")
  })
  description = "The audit log's monthly partitions: created ahead; with retention_months > 0, older months are archived to archive_url (the maintenance identity must be able to write there) and dropped."
  default     = {}
  validation {
    condition     = var.audit_log.partitions_ahead >= 1 && var.audit_log.retention_months >= 0 && (var.audit_log.retention_months == 0 || var.audit_log.archive_url != "")
    error_message = "audit_log: partitions_ahead at least 1; a retention needs an archive_url (months are archived before they are dropped)."
  }
}

variable "oauth_client_secret" {
  type        = string
  description = "The OAuth client's secret, stored in Secret Manager; null: none (keep it out of state by adding a version yourself)."
  default     = null
  sensitive   = true
}

variable "api_settings" {
  type = object({
    trusted_proxy_hops     = number
    rate_limit_per_address = string
    rate_limit_per_token   = string
    api_token_days         = number
    api_token_max_days     = number
  })
  description = "The API's request limits and token lifetimes (settings.py documents each)."
  default = {
    trusted_proxy_hops     = 1
    rate_limit_per_address = "600/minute"
    rate_limit_per_token   = "1200/minute"
    api_token_days         = 90
    api_token_max_days     = 365
  }

  validation {
    condition     = var.api_settings.api_token_days >= 1 && var.api_settings.api_token_days <= var.api_settings.api_token_max_days
    error_message = "api_settings: api_token_days must be at least 1 and at most api_token_max_days."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids the backup-failure alert notifies."
  default     = []
}

variable "pitr_customer_projects" {
  type        = list(string)
  description = "Project numbers of customer projects that deploy the PITR capture module: their service agents may build from the capture source and run as the capture identity."
  default     = []

  validation {
    condition     = alltrue([for p in var.pitr_customer_projects : can(regex("^[0-9]+$", p))])
    error_message = "pitr_customer_projects must be project numbers (digits), not project ids."
  }
}

variable "pitr_customer_deployers" {
  type        = list(string)
  description = "Members (e.g. serviceAccount:terraform@customer.iam.gserviceaccount.com) that apply modules/customer_pitr: deploying the capture as FireBackup's capture identity needs actAs on it."
  default     = []

  validation {
    condition     = alltrue([for m in var.pitr_customer_deployers : can(regex("^(serviceAccount|user|group):", m))])
    error_message = "pitr_customer_deployers must be IAM members such as serviceAccount:NAME@PROJECT.iam.gserviceaccount.com."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}
}
