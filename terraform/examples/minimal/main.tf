# The least to run FireBackup: one project, defaults everywhere (a zonal database with a public IP
# reachable only through the Cloud SQL connector, Google-managed encryption, no OAuth client).
# Build first: `.venv/bin/python -m infra.build_functions` from the repository root.

variable "project_id" {
  type        = string
  description = "The Google Cloud project to deploy into."
}

provider "google" {
  project = var.project_id
  region  = "us-central1"
}

provider "google-beta" {
  project = var.project_id
  region  = "us-central1"
}

module "firebackup" {
  source = "../.."

  project_id = var.project_id
}

output "api_url" {
  description = "The API's URL."
  value       = module.firebackup.api_url
}
