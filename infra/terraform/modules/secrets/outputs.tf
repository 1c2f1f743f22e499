output "database_password" {
  description = "Master password of the database, for the rds module."
  value       = random_password.database.result
  sensitive   = true
}

output "database_secret_name" {
  description = "Name of the database secret: DATABASE_PASSWORD is aws-sm:NAME#password."
  value       = aws_secretsmanager_secret.database.name
}

output "pii_pseudonym_key_secret_arn" {
  description = "ARN of the edge's pseudonym key secret, for the edge task's PII_PSEUDONYM_KEY. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.pii_pseudonym_key.arn
}

output "secret_arns" {
  description = "ARNs of every secret of the environment."
  value       = [aws_secretsmanager_secret.database.arn, aws_secretsmanager_secret.pii_pseudonym_key.arn]
}
