# Secrets Manager secrets under muejam/ENVIRONMENT/:
#
#   database           the app server's database login, as JSON {"username", "password"}: the
#                      role database_app_username (a member of muejam_app, which migration
#                      0005_audit.sql makes: DML on the API's tables, no DDL, the audit log
#                      append-only). The one-off migration task creates or updates that role with
#                      this password (docker/migrate-entrypoint.sh). The app server reads the
#                      password itself, from DATABASE_PASSWORD=aws-sm:muejam/ENVIRONMENT/database#password,
#                      with its task role (infra/iam-policies/secrets-manager-policy.json, narrowed
#                      to muejam/ENVIRONMENT/), so no password is in a task definition or in
#                      DATABASE_URL.
#   database-master    the RDS master user and password, as JSON {"username", "password"}: the
#                      migration role, the owner of the schema. Only the one-off migration task
#                      reads it (ECS injects the password through its execution role); the app
#                      server's task role may not (an explicit Deny).
#   sentry-dsn         only where sentry_dsn is set: the DSN the app server sends error events to,
#                      SENTRY_DSN=aws-sm:muejam/ENVIRONMENT/sentry-dsn.
#   pii-pseudonym-key  the HMAC key the edge's access logs pseudonymise emails with, a plain
#                      string. ECS injects it into the edge container as PII_PSEUDONYM_KEY (a
#                      task definition secret: its value is in no task definition); the edge's
#                      execution role may read it (and valkey-auth-token and
#                      cdn-origin-secret, below); the app server reads it too
#                      (APP_PSEUDONYM_KEY=aws-sm:…), for the client addresses of audit events,
#                      so that an address joins across edge logs and audit. A new key changes
#                      every pseudonym: the log lines before and after it no longer join.
#   valkey-auth-token  the AUTH token of ElastiCache Valkey (modules/valkey, auth_token), a
#                      plain string of letters and digits (AUTH tokens are 16 to 128 printable
#                      characters without @, ", / or %). ECS injects it into the edge container
#                      as VALKEY_PASSWORD (a task definition secret, read by the edge's
#                      execution role); the app server reads it itself, from
#                      VALKEY_PASSWORD=aws-sm:muejam/ENVIRONMENT/valkey-auth-token, with its
#                      task role. Rotation: modules/valkey.
#   cdn-origin-secret  the value CloudFront adds to every request it sends to the load balancer
#                      as the origin custom header X-Origin-Verify (modules/cloudfront); the
#                      load balancer forwards to the edge only requests that carry it
#                      (modules/alb), and the edge trusts CloudFront-Viewer-Address only with
#                      it (client_address in caddyfiles/production.Caddyfile). 48 letters and
#                      digits: header-safe, and within the 128 characters of an ALB header
#                      condition. ECS injects it into the edge container as CDN_ORIGIN_SECRET (a
#                      task definition secret, read by the edge's execution role); the app
#                      server's task role may not read it (an explicit Deny). Rotating it
#                      (terraform apply -replace=module.secrets.random_password.cdn_origin_secret)
#                      changes CloudFront, the listener rule and the secret in one apply, but
#                      running edge tasks keep the old value until they restart: requests are
#                      refused (403) from the first change until the edge service is redeployed,
#                      so rotate in a quiet window and redeploy the edge right after.
#   read-your-writes-key  the HMAC key of the read-your-writes tokens (internal/rywtoken), 64
#                      letters and digits. The app server signs with it and reads it itself,
#                      from READ_YOUR_WRITES_KEY=aws-sm:muejam/ENVIRONMENT/read-your-writes-key,
#                      with its task role; ECS injects it into the edge container as
#                      READ_YOUR_WRITES_KEY (a task definition secret, read by the edge's
#                      execution role), where read_your_writes verifies tokens before edge_cache
#                      lets them skip the cache. Both read it at start: a new key
#                      (terraform apply -replace=module.secrets.random_password.read_your_writes_key)
#                      takes effect as each task restarts, and until both services are
#                      redeployed tokens from the other key are ignored (reads may come from a
#                      cache or a replica for a TTL); docs/operators.md explains the rotation with
#                      READ_YOUR_WRITES_KEY_PREVIOUS that avoids even that.
#
# With replica_region set (production: the region the database backups are replicated to),
# every secret is replicated there, so that a database restored in that region from the
# replicated backups finds its master password, and the services their keys and tokens.

# The master password (random_password.database) and the app's (random_password.database_app).
resource "random_password" "database" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "database_master" {
  name                    = "muejam/${var.environment_name}/database-master"
  description             = "RDS master user and password of the MueJam PostgreSQL primary and replicas: the migration role, read by the one-off migration task only."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "database_master" {
  secret_id = aws_secretsmanager_secret.database_master.id
  secret_string = jsonencode({
    username = var.database_username
    password = random_password.database.result
  })
}

resource "random_password" "database_app" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "database" {
  name                    = "muejam/${var.environment_name}/database"
  description             = "The app server's database login (a member of muejam_app: DML only), as JSON username and password."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    username = var.database_app_username
    password = random_password.database_app.result
  })
}

# Only where a DSN is given: without it the app server sends no error events.
resource "aws_secretsmanager_secret" "sentry_dsn" {
  count                   = var.sentry_dsn == "" ? 0 : 1
  name                    = "muejam/${var.environment_name}/sentry-dsn"
  description             = "DSN of the Sentry project the app server sends error events to (SENTRY_DSN=aws-sm:...)."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "sentry_dsn" {
  count         = var.sentry_dsn == "" ? 0 : 1
  secret_id     = aws_secretsmanager_secret.sentry_dsn[0].id
  secret_string = var.sentry_dsn
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

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "pii_pseudonym_key" {
  secret_id     = aws_secretsmanager_secret.pii_pseudonym_key.id
  secret_string = random_password.pii_pseudonym_key.result
}

resource "random_password" "valkey_auth_token" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "valkey_auth_token" {
  name                    = "muejam/${var.environment_name}/valkey-auth-token"
  description             = "AUTH token of the MueJam Valkey (ElastiCache, in-transit encryption on): VALKEY_PASSWORD of the edge and the app server."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "valkey_auth_token" {
  secret_id     = aws_secretsmanager_secret.valkey_auth_token.id
  secret_string = random_password.valkey_auth_token.result
}

resource "random_password" "cdn_origin_secret" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "cdn_origin_secret" {
  name                    = "muejam/${var.environment_name}/cdn-origin-secret"
  description             = "Value of the X-Origin-Verify header CloudFront adds to origin requests: the load balancer forwards and the edge trusts CloudFront-Viewer-Address only with it (CDN_ORIGIN_SECRET of the edge)."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "cdn_origin_secret" {
  secret_id     = aws_secretsmanager_secret.cdn_origin_secret.id
  secret_string = random_password.cdn_origin_secret.result
}

resource "random_password" "read_your_writes_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "read_your_writes_key" {
  name                    = "muejam/${var.environment_name}/read-your-writes-key"
  description             = "HMAC key of the read-your-writes tokens: the app server signs them (READ_YOUR_WRITES_KEY=aws-sm:...), the edge verifies them before a token skips its cache (READ_YOUR_WRITES_KEY)."
  recovery_window_in_days = var.recovery_window_days
  tags                    = var.tags

  dynamic "replica" {
    for_each = var.replica_region == null ? [] : [var.replica_region]
    content {
      region = replica.value
    }
  }
}

resource "aws_secretsmanager_secret_version" "read_your_writes_key" {
  secret_id     = aws_secretsmanager_secret.read_your_writes_key.id
  secret_string = random_password.read_your_writes_key.result
}
