output "state_buckets" {
  description = "State bucket of each environment."
  value       = { for env, b in aws_s3_bucket.state : env => b.bucket }
}

output "lock_tables" {
  description = "Lock table of each environment."
  value       = { for env, t in aws_dynamodb_table.lock : env => t.name }
}
