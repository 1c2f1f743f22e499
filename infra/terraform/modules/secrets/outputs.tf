output "database_password" {
  description = "Master password of the database, for the rds module."
  value       = random_password.database.result
  sensitive   = true
}

output "database_secret_name" {
  description = "Name of the database secret: DATABASE_PASSWORD is aws-sm:NAME#password."
  value       = aws_secretsmanager_secret.database.name
}

output "secret_arns" {
  description = "ARNs of every secret of the environment."
  value       = [aws_secretsmanager_secret.database.arn]
}
