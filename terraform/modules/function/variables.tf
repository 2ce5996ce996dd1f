variable "project_id" {
  type        = string
  description = "Project the function runs in."
}

variable "region" {
  type        = string
  description = "Region of the function."
}

variable "name" {
  type        = string
  description = "The function's name (and its Cloud Run service's)."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lowercase letters, digits and hyphens, starting with a letter (at most 63)."
  }
}

variable "entry_point" {
  type        = string
  description = "The Python function in main.py the framework calls (named like the function's folder)."
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime, e.g. python311."

  validation {
    condition     = can(regex("^python3[0-9]+$", var.runtime))
    error_message = "runtime must be a Python runtime such as python311."
  }
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding the zipped vendored build."
}

variable "source_object" {
  type        = string
  description = "Object name of the zip; it holds the zip's hash, so a new build is a new object and redeploys."
}

variable "service_account_email" {
  type        = string
  description = "The function's own identity."
}

variable "environment" {
  type        = map(string)
  description = "Plain environment variables (the settings the function reads)."
  default     = {}
}

variable "secret_environment" {
  type        = map(string)
  description = "Environment variable name to Secret Manager secret id (latest version)."
  default     = {}
}

variable "secret_project_id" {
  type        = string
  description = "Project of the secrets; null: project_id."
  default     = null
}

variable "memory" {
  type        = string
  description = "Memory per instance, e.g. 512Mi or 2Gi."
  default     = "512Mi"
}

variable "cpu" {
  type        = string
  description = "vCPUs per instance."
  default     = "1"
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout in seconds (HTTP functions up to 3600, event functions up to 540)."
  default     = 60

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 3600
    error_message = "timeout_seconds must be 1 to 3600."
  }
}

variable "max_instances" {
  type        = number
  description = "Most instances at once."
  default     = 10
}

variable "concurrency" {
  type        = number
  description = "Requests an instance serves at once. Above 1 only for a function built for it (an async one), with 1 vCPU or more."
  default     = 1

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be 1 to 1000 (Cloud Run's limit)."
  }
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm (billed while idle)."
  default     = 0
}

variable "vpc_connector" {
  type        = string
  description = "Serverless VPC Access connector for private egress; null: none."
  default     = null
}

variable "ingress" {
  type        = string
  description = "ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "trigger_topic" {
  type        = string
  description = "Pub/Sub topic id whose messages invoke the function through Eventarc; null: invoked over HTTP."
  default     = null
}

variable "trigger_identity" {
  type        = string
  description = "Service account Eventarc pushes the topic's messages with (it holds run.invoker on this function)."
  default     = null
}

variable "labels" {
  type        = map(string)
  description = "Labels of the function."
  default     = {}
}
