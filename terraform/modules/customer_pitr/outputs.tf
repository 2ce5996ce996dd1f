output "capture_url" {
  description = "The capture function's URL in this project (internal ingress only)."
  value       = module.capture.url
}

output "trigger_service_account" {
  description = "The Eventarc trigger identity created in this project."
  value       = google_service_account.trigger.email
}

output "triggers" {
  description = "Eventarc trigger names by database id."
  value       = { for db, t in google_eventarc_trigger.written : db => t.name }
}
