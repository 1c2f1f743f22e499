# Secrets Manager secrets under muejam/ENVIRONMENT/. Today one: the database master user and
# password, as JSON {"username", "password"}. The app server reads the password itself, from
# DATABASE_PASSWORD=aws-sm:muejam/ENVIRONMENT/database#password, with its task role
# (infra/iam-policies/secrets-manager-policy.json: muejam/* only), so no password is in a task
# definition or in DATABASE_URL.

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
