output "address" {
  description = "Host name of the primary (writes)."
  value       = aws_db_instance.primary.address
}

output "port" {
  description = "Port of the primary and of the replicas."
  value       = aws_db_instance.primary.port
}

output "replica_addresses" {
  description = "Host names of the read replicas."
  value       = aws_db_instance.replica[*].address
}

output "database_name" {
  description = "Name of the database."
  value       = aws_db_instance.primary.db_name
}

output "backup_replication_arn" {
  description = "ARN of the replicated automated backups in the backup region, or null."
  value       = one(aws_db_instance_automated_backups_replication.this[*].id)
}
