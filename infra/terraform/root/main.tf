# One MueJam Edge environment on AWS. dev, staging and production link this root module's
# files (environments/*/main.tf, variables.tf, outputs.tf); their differences are in terraform.tfvars, and each has
# its own state in backend.tf. CloudFront -> ALB -> edge (custom Caddy) on ECS Fargate ->
# app server on ECS Fargate -> RDS PostgreSQL primary and read replicas, ElastiCache Valkey.

terraform {
  required_version = ">= 1.10.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}

# CloudFront's certificate and WAF web ACL live in us-east-1.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
  default_tags {
    tags = local.tags
  }
}

# Replicated database backups (production: another region than var.region).
provider "aws" {
  alias  = "backup"
  region = var.backup_region
  default_tags {
    tags = local.tags
  }
}

locals {
  name     = "muejam-${var.environment}"
  policies = "${path.module}/../../../iam-policies"
  tags = {
    Project     = "muejam"
    Environment = var.environment
    ManagedBy   = "terraform"
  }
  # The seed's alerts: critical ones page the on-call (the critical topic), warnings go to
  # email and chat (the warning topic).
  critical_actions = var.alerting ? [aws_sns_topic.critical[0].arn] : []
  warning_actions  = var.alerting ? [aws_sns_topic.warning[0].arn] : []
  # Every database connection uses TLS (the rds module sets rds.force_ssl) and verifies the
  # server's certificate and name against the RDS CA bundle that docker/appserver.Dockerfile
  # and docker/migrate.Dockerfile bake into the images at build time.
  db_ca_bundle = "/etc/ssl/certs/rds-global-bundle.pem"
  db_path      = "muejam?sslmode=verify-full&sslrootcert=${local.db_ca_bundle}"
  # The IAM policy of the app server's task role: infra/iam-policies/secrets-manager-policy.json
  # names muejam/* (appserver/secrets/policy_test.go checks it against the package, for every
  # environment); each environment attaches it narrowed to its own secrets, muejam/ENVIRONMENT/,
  # so that staging's tasks cannot read production's secrets, nor the reverse. The Deny
  # statements (muejam/*/NAME-*) become muejam/ENVIRONMENT/NAME-*.
  secrets_policy_file = jsondecode(file("${local.policies}/secrets-manager-policy.json"))
  secrets_policy = jsonencode(merge(local.secrets_policy_file, {
    Statement = [for st in local.secrets_policy_file.Statement : merge(st, {
      Resource = [for r in flatten([st.Resource]) : replace(replace(r, ":secret:muejam/*/", ":secret:muejam/${var.environment}/"), ":secret:muejam/*", ":secret:muejam/${var.environment}/*")]
    })]
  }))
  # The edge's site (production.Caddyfile's EDGE_PORT): the load balancer's target port.
  edge_port = 8080
  # The edge's metrics listener (production.Caddyfile's http://:9180, /metrics only): the
  # port the monitoring security group reaches (modules/network) and the task's port mapping
  # named metrics. The admin API stays on the task's loopback (the Caddyfile's default).
  edge_metrics_port = 9180
  # What reaches the app server's port: the edge tasks, from the private subnets, through the
  # app task's Service Connect proxy, which forwards each request to the app container over
  # the task's loopback. TRUSTED_EDGE_CIDRS, comma-separated; the security group admits the
  # edge tier alone to that port (modules/network).
  app_trusted_edge_cidrs = concat(module.network.private_subnet_cidrs, ["127.0.0.0/8", "::1/128"])
  # VALKEY_CLUSTER of the edge and the app server: on requires a cluster (modules/valkey's
  # cluster_mode), off a single shard.
  valkey_cluster = var.valkey_cluster_mode ? "on" : "off"
}

module "network" {
  source              = "../../modules/network"
  name                = local.name
  cidr_block          = var.vpc_cidr
  az_count            = var.az_count
  single_nat_gateway  = var.single_nat_gateway
  alb_cloudfront_only = var.enable_cdn
}

module "secrets" {
  source                = "../../modules/secrets"
  environment_name      = var.environment
  database_username     = var.db_username
  database_app_username = var.db_app_username
  sentry_dsn            = var.sentry_dsn
  recovery_window_days  = var.secret_recovery_window_days
  # The disaster-recovery region: where the database backups are replicated.
  replica_region = var.db_backup_replication ? var.backup_region : null
}

module "rds" {
  source = "../../modules/rds"
  providers = {
    aws        = aws
    aws.backup = aws.backup
  }
  name                  = local.name
  engine_version        = var.db_engine_version
  instance_class        = var.db_instance_class
  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  database_name         = "muejam"
  username              = var.db_username
  password              = module.secrets.database_password
  multi_az              = var.db_multi_az
  replica_count         = var.db_replica_count
  backup_retention_days = var.db_backup_retention_days
  backup_replication    = var.db_backup_replication
  performance_insights  = var.db_performance_insights
  subnet_ids            = module.network.private_subnet_ids
  security_group_id     = module.network.security_group_ids["database"]
  deletion_protection   = var.deletion_protection
  critical_actions      = local.critical_actions
  warning_actions       = local.warning_actions
}

module "valkey" {
  source                  = "../../modules/valkey"
  name                    = local.name
  engine_version          = var.valkey_engine_version
  node_type               = var.valkey_node_type
  cluster_mode            = var.valkey_cluster_mode
  shards                  = var.valkey_shards
  replicas_per_shard      = var.valkey_replicas_per_shard
  snapshot_retention_days = var.valkey_snapshot_retention_days
  auth_token              = module.secrets.valkey_auth_token
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.network.security_group_ids["valkey"]
}

module "alb" {
  source              = "../../modules/alb"
  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.public_subnet_ids
  security_group_id   = module.network.security_group_ids["alb"]
  domain_name         = var.alb_domain_name
  hosted_zone_id      = one(data.aws_route53_zone.this[*].zone_id)
  origin_secret       = module.secrets.cdn_origin_secret
  target_port         = local.edge_port
  health_check_path   = "/v1/health"
  deletion_protection = var.deletion_protection
  critical_actions    = local.critical_actions
  warning_actions     = local.warning_actions
}

module "cloudfront" {
  source = "../../modules/cloudfront"
  count  = var.enable_cdn ? 1 : 0
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }
  name                = local.name
  origin_domain_name  = module.alb.origin_domain_name
  origin_https        = module.alb.https
  origin_secret       = module.secrets.cdn_origin_secret
  aliases             = var.cdn_aliases
  hosted_zone_id      = one(data.aws_route53_zone.this[*].zone_id)
  static_path_pattern = "/static/*"
  price_class         = var.cdn_price_class
  waf_rate_limit      = var.waf_rate_limit
}

# The public hosted zone of the environment's names (alb_domain_name, cdn_aliases): ACM validates
# their certificates with records in it, and it holds their alias records.
data "aws_route53_zone" "this" {
  count        = var.dns_zone_name == "" ? 0 : 1
  name         = var.dns_zone_name
  private_zone = false
}

# Where the seed's alarms go (infra/monitoring/alertmanager/alertmanager.yml routes the same
# alerts the same way): critical ones page the on-call through an HTTPS endpoint (PagerDuty's or
# Opsgenie's CloudWatch integration URL), warnings go to email and chat.
resource "aws_sns_topic" "critical" {
  count = var.alerting ? 1 : 0
  name  = "${local.name}-alerts-critical"

  lifecycle {
    precondition {
      condition     = var.pager_endpoint != ""
      error_message = "alerting needs pager_endpoint (TF_VAR_pager_endpoint): the HTTPS integration URL critical alarms page the on-call through."
    }
  }
}

resource "aws_sns_topic_subscription" "pager" {
  count                  = var.alerting ? 1 : 0
  topic_arn              = aws_sns_topic.critical[0].arn
  protocol               = "https"
  endpoint               = var.pager_endpoint
  endpoint_auto_confirms = true
}

resource "aws_sns_topic" "warning" {
  count = var.alerting ? 1 : 0
  name  = "${local.name}-alerts-warning"
}

resource "aws_sns_topic_subscription" "warning_email" {
  for_each  = var.alerting ? toset(var.warning_emails) : toset([])
  topic_arn = aws_sns_topic.warning[0].arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_sns_topic_subscription" "warning_chat" {
  count                  = var.alerting && var.warning_chat_endpoint != "" ? 1 : 0
  topic_arn              = aws_sns_topic.warning[0].arn
  protocol               = "https"
  endpoint               = var.warning_chat_endpoint
  endpoint_auto_confirms = true
}

resource "aws_service_discovery_http_namespace" "this" {
  name        = "${local.name}.internal"
  description = "Service Connect names of ${local.name}: the edge reaches the app server as appserver:8081."
}

resource "aws_ecs_cluster" "this" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enhanced" : "disabled"
  }

  service_connect_defaults {
    namespace = aws_service_discovery_http_namespace.this.arn
  }
}

# The app server. Its environment holds only variables appserver/config.go reads (a test
# checks). The database URLs carry no password: the app server reads it from Secrets Manager
# (DATABASE_PASSWORD, an aws-sm: reference) with its task role, and so Valkey's AUTH token
# (VALKEY_PASSWORD); it speaks TLS to Valkey, verified against the system roots. It trusts
# X-Auth-User only from what can reach it: the edge (local.app_trusted_edge_cidrs). Without
# replicas the flag -replica-urls= turns off the image's loopback default (an empty variable
# would not).
module "appserver" {
  source           = "../../modules/ecs-service"
  name             = "appserver"
  environment_name = var.environment
  region           = var.region
  cluster_id       = aws_ecs_cluster.this.arn
  cluster_name     = aws_ecs_cluster.this.name
  image_tag        = var.image_tag
  cpu              = var.app_cpu
  memory           = var.app_memory
  container_port   = 8081
  metrics_port     = 9081
  command          = var.db_replica_count > 0 ? [] : ["-replica-urls="]
  environment = merge(
    {
      APP_ADDR           = "0.0.0.0:8081"
      APP_METRICS_ADDR   = "0.0.0.0:9081"
      DATABASE_URL       = "postgres://${module.secrets.database_app_username}@${module.rds.address}:${module.rds.port}/${local.db_path}"
      DATABASE_PASSWORD  = "aws-sm:${module.secrets.database_secret_name}#password"
      VALKEY_ADDR        = module.valkey.address
      VALKEY_CLUSTER     = local.valkey_cluster
      VALKEY_TLS         = "on"
      VALKEY_PASSWORD    = "aws-sm:${module.secrets.valkey_auth_token_secret_name}"
      TRUSTED_EDGE_CIDRS = join(",", local.app_trusted_edge_cidrs)
      LOG_LEVEL          = var.log_level
      # The app's role may not change the schema: the migration task migrates, before the
      # deploy updates this service (docs/deployment.md).
      MIGRATE_ON_START = "false"

      # The key of the read-your-writes tokens, which the edge verifies with the same key.
      READ_YOUR_WRITES_KEY = "aws-sm:${module.secrets.read_your_writes_key_secret_name}"
      # Audit events pseudonymise client addresses with the key of the edge's logs, so that
      # an address joins across both.
      APP_PSEUDONYM_KEY = "aws-sm:${module.secrets.pii_pseudonym_key_secret_name}"
    },
    var.db_replica_count > 0 ? {
      DATABASE_REPLICA_URLS = join(",", [for host in module.rds.replica_addresses : "postgres://${module.secrets.database_app_username}@${host}:${module.rds.port}/${local.db_path}"])
    } : {},
    # Error events to Sentry where the environment has a DSN (its secret, which the task role
    # may read); without one, SENTRY_DSN stays unset and none is sent.
    var.sentry_dsn != "" ? {
      SENTRY_DSN = "aws-sm:${module.secrets.sentry_dsn_secret_name}"
    } : {},
  )
  desired_count                 = var.app_desired_count
  min_capacity                  = var.app_min_capacity
  max_capacity                  = var.app_max_capacity
  cpu_target                    = var.autoscaling_cpu_target
  memory_target                 = var.autoscaling_memory_target
  subnet_ids                    = module.network.private_subnet_ids
  security_group_ids            = [module.network.security_group_ids["appserver"]]
  service_connect_namespace_arn = aws_service_discovery_http_namespace.this.arn
  discovery_name                = "appserver"
  execution_policy              = file("${local.policies}/ecs-task-execution-policy.json")
  task_policies = {
    secrets-manager = local.secrets_policy
  }
  log_retention_days = var.log_retention_days
  critical_actions   = local.critical_actions
  warning_actions    = local.warning_actions
}

# The database migration, a one-off task (docker/migrate.Dockerfile: the app server's migrate
# command, then the app's login role): it connects as the master user, the migration role and
# owner of the schema, whose password only it gets (injected by ECS from database-master); it
# creates or updates the app server's login role database_app_username, a member of muejam_app
# (DML only), with the password of the app's secret. The deploy runs it, and waits for it to
# exit 0, before it updates the app server (docs/deployment.md); it runs in the app server's
# subnets and security group, which reach the database.
module "migrate" {
  source           = "../../modules/ecs-task"
  name             = "migrate"
  environment_name = var.environment
  region           = var.region
  image_tag        = var.image_tag
  environment = {
    DATABASE_URL      = "postgres://${var.db_username}@${module.rds.address}:${module.rds.port}/${local.db_path}"
    DATABASE_PASSWORD = "env:MIGRATE_DATABASE_PASSWORD"
    APP_DATABASE_USER = module.secrets.database_app_username
    LOG_LEVEL         = var.log_level
  }
  secrets = {
    MIGRATE_DATABASE_PASSWORD = "${module.secrets.database_master_secret_arn}:password::"
    APP_DATABASE_PASSWORD     = "${module.secrets.database_secret_arn}:password::"
  }
  execution_policy   = file("${local.policies}/ecs-task-execution-policy.json")
  log_retention_days = var.log_retention_days
}

# The edge: the custom Caddy image, which runs caddyfiles/production.Caddyfile (JWT, limits,
# cache, breakers, scrubbed logs), configured by exactly the environment that file reads but
# EDGE_ADMIN_ADDR (a test checks): its listeners, the app server through Service Connect
# (appserver:8081, load-balanced over its tasks by the Service Connect proxy), the
# environment's Valkey (over TLS, with the AUTH token), its identity provider, the pseudonym
# key of its logs, the load balancer's subnets (trusted X-Forwarded-For hops) and the CDN
# origin secret, and the key of the read-your-writes tokens. The four secrets, the
# pseudonym key, the AUTH token, the origin secret and the read-your-writes key, are injected
# by ECS from Secrets Manager. Its admin API stays on the task's loopback (EDGE_ADMIN_ADDR unset: the Caddyfile's
# localhost:2019); Prometheus scrapes its metrics listener. Its task role has no policy (the
# edge calls no AWS API); its execution role may read those four secrets only.
module "edge" {
  source           = "../../modules/ecs-service"
  name             = "edge"
  environment_name = var.environment
  region           = var.region
  cluster_id       = aws_ecs_cluster.this.arn
  cluster_name     = aws_ecs_cluster.this.name
  image_tag        = var.image_tag
  cpu              = var.edge_cpu
  memory           = var.edge_memory
  container_port   = local.edge_port
  metrics_port     = local.edge_metrics_port
  environment = {
    # The site and the metrics listener on every interface of the task, which in awsvpc mode
    # is its private ENI (and loopback): the security group admits the load balancer alone to
    # the first, the monitoring group alone to the second.
    EDGE_BIND         = "0.0.0.0"
    EDGE_PORT         = tostring(local.edge_port)
    EDGE_METRICS_BIND = "0.0.0.0"
    EDGE_METRICS_PORT = tostring(local.edge_metrics_port)
    # The load balancer reaches the tasks from its subnets: X-Forwarded-For hops from them are
    # trusted, and its health checks from them need no origin secret.
    EDGE_TRUSTED_PROXIES = join(" ", module.network.public_subnet_cidrs)
    APP_UPSTREAMS        = module.appserver.service_connect_address
    VALKEY_ADDR          = module.valkey.address
    VALKEY_CLUSTER       = local.valkey_cluster
    VALKEY_TLS           = "on"
    JWKS_URL             = var.jwks_url
    JWT_ISSUER           = var.jwt_issuer
    # With Valkey down each node admits limit/EDGE_EXPECTED_NODES. The count at creation:
    # autoscaling moves the real one between edge_min_capacity and edge_max_capacity.
    EDGE_EXPECTED_NODES = tostring(var.edge_desired_count)
    # ElastiCache answers in well under a millisecond within the VPC: a limiter call still
    # unanswered after 25ms is an outage, decided on the node's own windows.
    EDGE_RATE_LIMIT_TIMEOUT = "25ms"
    # The in-memory (L1) cache takes a quarter of the task's memory: 512MiB, the Caddyfile's
    # default, on production's 2 GiB tasks; 128MiB on dev's 512 MiB.
    EDGE_CACHE_L1 = "${floor(var.edge_memory / 4)}MiB"
  }
  secrets = {
    PII_PSEUDONYM_KEY = module.secrets.pii_pseudonym_key_secret_arn
    VALKEY_PASSWORD   = module.secrets.valkey_auth_token_secret_arn
    CDN_ORIGIN_SECRET = module.secrets.cdn_origin_secret_arn
    # The app server's key of the read-your-writes tokens: only a token it signed skips the
    # cache. READ_YOUR_WRITES_KEY_PREVIOUS stays unset but during a rotation.
    READ_YOUR_WRITES_KEY = module.secrets.read_your_writes_key_secret_arn
  }
  # Caddy writes its autosaved config and its storage under $HOME.
  read_only_root_filesystem     = false
  desired_count                 = var.edge_desired_count
  min_capacity                  = var.edge_min_capacity
  max_capacity                  = var.edge_max_capacity
  cpu_target                    = var.autoscaling_cpu_target
  memory_target                 = var.autoscaling_memory_target
  subnet_ids                    = module.network.private_subnet_ids
  security_group_ids            = [module.network.security_group_ids["edge"]]
  load_balanced                 = true
  target_group_arn              = module.alb.target_group_arn
  service_connect_namespace_arn = aws_service_discovery_http_namespace.this.arn
  execution_policy              = file("${local.policies}/ecs-task-execution-policy.json")
  log_retention_days            = var.log_retention_days
  critical_actions              = local.critical_actions
  warning_actions               = local.warning_actions
}

# The role GitHub Actions assumes (OpenID Connect, no stored keys) to run
# scripts/deployment/deploy.sh and rollback.sh from the GitHub environment of the same name.
data "aws_iam_openid_connect_provider" "github" {
  url = "https://token.actions.githubusercontent.com"
}

data "aws_iam_policy_document" "assume_deploy" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [data.aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:environment:${var.environment}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name               = "${local.name}-deploy"
  assume_role_policy = data.aws_iam_policy_document.assume_deploy.json
}

resource "aws_iam_role_policy" "deploy" {
  name   = "deploy"
  role   = aws_iam_role.deploy.id
  policy = file("${local.policies}/deploy-policy.json")
}
