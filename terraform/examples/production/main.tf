# FireBackup for production: a regional database on a private network, the platform's own KMS key
# (sealing, CMEK on the bucket, topics and secrets), OAuth connections, alerts to on-call, larger
# workers, and PITR capture allowed for two customer projects.

variable "project_id" {
  type        = string
  description = "The Google Cloud project to deploy into."
}

variable "oauth_client_secret" {
  type        = string
  description = "The OAuth client's secret (pass it from a secret store: TF_VAR_oauth_client_secret)."
  sensitive   = true
}

provider "google" {
  project = var.project_id
  region  = "europe-west1"
}

provider "google-beta" {
  project = var.project_id
  region  = "europe-west1"
}

resource "google_compute_network" "firebackup" {
  project                 = var.project_id
  name                    = "firebackup"
  auto_create_subnetworks = false
}

# Nothing reaches the network from outside: Cloud SQL is reached from the functions' connector only.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "firebackup-deny-ingress"
  network   = google_compute_network.firebackup.name
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]
}

resource "google_compute_global_address" "sql_range" {
  project       = var.project_id
  name          = "firebackup-sql-range"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.firebackup.id
}

resource "google_service_networking_connection" "sql" {
  network                 = google_compute_network.firebackup.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.sql_range.name]
}

resource "google_vpc_access_connector" "functions" {
  project       = var.project_id
  name          = "firebackup-functions"
  region        = "europe-west1"
  network       = google_compute_network.firebackup.name
  ip_cidr_range = "10.8.0.0/28"
}

resource "google_monitoring_notification_channel" "oncall" {
  project      = var.project_id
  display_name = "FireBackup on-call"
  type         = "email"
  labels = {
    email_address = "oncall@example.com"
  }
}

module "firebackup" {
  source = "../.."

  project_id          = var.project_id
  region              = "europe-west1"
  bucket_location     = "EU"
  sql_availability    = "REGIONAL"
  sql_tier            = "db-custom-2-7680"
  sql_private_network = google_compute_network.firebackup.id
  vpc_connector       = google_vpc_access_connector.functions.id
  kms = {
    enabled         = true
    rotation_period = "7776000s"
  }
  oauth_client_id             = "1234567890-example.apps.googleusercontent.com"
  oauth_client_secret         = var.oauth_client_secret
  oauth_redirect_uri          = "https://backup.example.com/connect/callback"
  alert_notification_channels = [google_monitoring_notification_channel.oncall.name]
  backup_noncurrent_days      = 14
  function_sizes = {
    backup_worker = {
      memory        = "4Gi"
      cpu           = "2"
      timeout       = 3600
      max_instances = 100
      min_instances = 0
    }
    api = {
      memory        = "1Gi"
      cpu           = "1"
      timeout       = 60
      max_instances = 40
      min_instances = 1
    }
  }
  pitr_customer_projects = ["111111111111", "222222222222"]
  labels = {
    env = "production"
  }

  depends_on = [google_service_networking_connection.sql]
}

output "api_url" {
  description = "The API's URL."
  value       = module.firebackup.api_url
}

output "pitr_capture" {
  description = "Hand this to customers applying modules/customer_pitr."
  value       = module.firebackup.pitr_capture
}
