variable "project_id" {
  type        = string
  description = "The customer's project: the one holding the Firestore databases to capture."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6 to 30 lowercase letters, digits and hyphens."
  }
}

variable "databases" {
  type = map(object({
    location = string
  }))
  description = "Firestore databases to capture, by database id (\"(default)\" for the default one), each with its location (e.g. nam5, us-central1)."

  validation {
    condition     = length(var.databases) > 0
    error_message = "databases must name at least one Firestore database."
  }
}

variable "capture" {
  type = object({
    project_id            = string
    region                = string
    entry_point           = string
    runtime               = string
    source_bucket         = string
    source_object         = string
    service_account_email = string
    environment           = map(string)
    secret_environment    = map(string)
    memory                = string
    timeout_seconds       = number
    max_instances         = number
    concurrency           = number
  })
  description = "FireBackup's `pitr_capture` output: the capture's build, identity and settings (FireBackup's operator hands it over)."
}

variable "region" {
  type        = string
  description = "Region the capture function runs in, in this project; null: the capture's region."
  default     = null
}
