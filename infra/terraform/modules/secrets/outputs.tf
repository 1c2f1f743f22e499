output "database_password" {
  description = "Master password of the database, for the rds module."
  value       = random_password.database.result
  sensitive   = true
}

output "database_secret_name" {
  description = "Name of the app server's database secret: its DATABASE_PASSWORD is aws-sm:NAME#password. Available once the secret has a value."
  value       = aws_secretsmanager_secret.database.name
  depends_on  = [aws_secretsmanager_secret_version.database]
}

output "database_secret_arn" {
  description = "ARN of the app server's database secret, whose password the migration task gets injected to create or update the app's login role. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.database.arn
}

output "database_app_username" {
  description = "Login role of the app server, the user of its DATABASE_URL."
  value       = var.database_app_username
}

output "database_master_secret_arn" {
  description = "ARN of the master (migration role) secret, injected into the migration task only. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.database_master.arn
}

output "sentry_dsn_secret_name" {
  description = "Name of the Sentry DSN secret (the app server's SENTRY_DSN is aws-sm:NAME), or null without a DSN."
  value       = one(aws_secretsmanager_secret.sentry_dsn[*].name)
  depends_on  = [aws_secretsmanager_secret_version.sentry_dsn]
}

output "pii_pseudonym_key_secret_arn" {
  description = "ARN of the edge's pseudonym key secret, for the edge task's PII_PSEUDONYM_KEY. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.pii_pseudonym_key.arn
}

output "valkey_auth_token" {
  description = "AUTH token of Valkey, for the valkey module."
  value       = random_password.valkey_auth_token.result
  sensitive   = true
}

output "valkey_auth_token_secret_arn" {
  description = "ARN of the Valkey AUTH token secret, for the edge task's VALKEY_PASSWORD. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.valkey_auth_token.arn
}

output "valkey_auth_token_secret_name" {
  description = "Name of the Valkey AUTH token secret: the app server's VALKEY_PASSWORD is aws-sm:NAME. Available once the secret has a value."
  value       = aws_secretsmanager_secret.valkey_auth_token.name
  depends_on  = [aws_secretsmanager_secret_version.valkey_auth_token]
}

output "cdn_origin_secret" {
  description = "Value of the X-Origin-Verify header: the custom origin header of CloudFront and the condition of the load balancer's listener rule."
  value       = random_password.cdn_origin_secret.result
  sensitive   = true
}

output "cdn_origin_secret_arn" {
  description = "ARN of the CDN origin secret, for the edge task's CDN_ORIGIN_SECRET. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.cdn_origin_secret.arn
}

output "pii_pseudonym_key_secret_name" {
  description = "Name of the pseudonym key secret: the app server's APP_PSEUDONYM_KEY is aws-sm:NAME, so that audit events pseudonymise client addresses with the key of the edge's logs. Available once the secret has a value."
  value       = aws_secretsmanager_secret.pii_pseudonym_key.name
  depends_on  = [aws_secretsmanager_secret_version.pii_pseudonym_key]
}

output "read_your_writes_key_secret_arn" {
  description = "ARN of the read-your-writes key secret, for the edge task's READ_YOUR_WRITES_KEY. Taken from the secret's version, so that no task starts before the secret has a value."
  value       = aws_secretsmanager_secret_version.read_your_writes_key.arn
}

output "read_your_writes_key_secret_name" {
  description = "Name of the read-your-writes key secret: the app server's READ_YOUR_WRITES_KEY is aws-sm:NAME. Available once the secret has a value."
  value       = aws_secretsmanager_secret.read_your_writes_key.name
  depends_on  = [aws_secretsmanager_secret_version.read_your_writes_key]
}

output "secret_arns" {
  description = "ARNs of every secret of the environment."
  value = concat([
    aws_secretsmanager_secret.database.arn,
    aws_secretsmanager_secret.database_master.arn,
    aws_secretsmanager_secret.pii_pseudonym_key.arn,
    aws_secretsmanager_secret.valkey_auth_token.arn,
    aws_secretsmanager_secret.cdn_origin_secret.arn,
    aws_secretsmanager_secret.read_your_writes_key.arn,
  ], aws_secretsmanager_secret.sentry_dsn[*].arn)
}
