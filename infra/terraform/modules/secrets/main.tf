# Secrets Manager secrets under muejam/ENVIRONMENT/:
#
#   database           the database master user and password, as JSON {"username", "password"}.
#                      The app server reads the password itself, from
#                      DATABASE_PASSWORD=aws-sm:muejam/ENVIRONMENT/database#password, with its
#                      task role (infra/iam-policies/secrets-manager-policy.json: muejam/* but
#                      the pseudonym key below), so no password is in a task definition or in
#                      DATABASE_URL.
#   pii-pseudonym-key  the HMAC key the edge's access logs pseudonymise emails with, a plain
#                      string. ECS injects it into the edge container as PII_PSEUDONYM_KEY (a
#                      task definition secret: its value is in no task definition); the edge's
#                      execution role may read this secret and no other, the app server's task
#                      role may not (an explicit Deny). A new key changes
#                      every pseudonym: the log lines before and after it no longer join.

resource "random_password" "database" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "database" {
  name                    = "muejam/${var.environment_name}/database"
  description             = "Master user and password of the MueJam PostgreSQL primary and replicas."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    username = var.database_username
    password = random_password.database.result
  })
}

resource "random_password" "pii_pseudonym_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "pii_pseudonym_key" {
  name                    = "muejam/${var.environment_name}/pii-pseudonym-key"
  description             = "HMAC key of the edge's pii_scrub log encoder (PII_PSEUDONYM_KEY): emails in access logs become stable pseudonyms."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "pii_pseudonym_key" {
  secret_id     = aws_secretsmanager_secret.pii_pseudonym_key.id
  secret_string = random_password.pii_pseudonym_key.result
}
