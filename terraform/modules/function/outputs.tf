output "name" {
  description = "The function's name."
  value       = google_cloudfunctions2_function.function.name
}

output "url" {
  description = "The function's HTTPS URL."
  value       = google_cloudfunctions2_function.function.url
}

output "service_name" {
  description = "The Cloud Run service behind the function (for run.invoker grants)."
  value       = google_cloudfunctions2_function.function.service_config[0].service
}
