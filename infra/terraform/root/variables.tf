# Every knob of an environment. dev, staging and production share this file; each sets the
# values in its terraform.tfvars.

variable "environment" {
  description = "dev, staging or production: names the resources (muejam-ENVIRONMENT) and the secrets (muejam/ENVIRONMENT/...)."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "production"], var.environment)
    error_message = "environment must be dev, staging or production."
  }
}

variable "region" {
  description = "AWS region of the environment."
  type        = string
}

variable "backup_region" {
  description = "Region the database backups are replicated to when db_backup_replication is set."
  type        = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose deploy workflow may assume the deploy role."
  type        = string
}

variable "image_tag" {
  description = "Image tag of the first task definitions; deploy.sh pushes and deploys later ones."
  type        = string
  default     = "bootstrap"
}

# Network

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
}

variable "az_count" {
  description = "Availability zones used (at least 2)."
  type        = number
}

variable "single_nat_gateway" {
  description = "One NAT gateway for every zone instead of one per zone."
  type        = bool
}

# Edge, CDN and monitoring

variable "enable_cdn" {
  description = "Put CloudFront (with WAF and the static assets bucket) in front of the load balancer, which then admits CloudFront only."
  type        = bool
}

variable "dns_zone_name" {
  description = "Public Route 53 hosted zone of alb_domain_name and cdn_aliases: their ACM certificates are validated by DNS records in it, and their alias records are made in it. Empty only with neither (dev)."
  type        = string
  default     = ""
}

variable "alb_domain_name" {
  description = "DNS name of the load balancer (an alias record in dns_zone_name) and of its ACM certificate, validated by DNS: the load balancer then serves HTTPS (TLS 1.2/1.3) and redirects HTTP to it (301), and CloudFront reaches it over HTTPS only, verifying that name. Empty: no certificate, plain HTTP only; only dev, which has no domain and no CloudFront, leaves it empty (a test checks that staging and production are HTTPS)."
  type        = string
  default     = ""
}

variable "cdn_aliases" {
  description = "Domain names of the CloudFront distribution, in dns_zone_name: CloudFront gets an ACM certificate for them (us-east-1, DNS-validated) and refuses viewers below TLS 1.2 (TLSv1.2_2021). Empty: the cloudfront.net name, whose certificate allows older TLS."
  type        = list(string)
  default     = []
}

variable "cdn_price_class" {
  description = "CloudFront price class."
  type        = string
  default     = "PriceClass_100"
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes above which WAF blocks."
  type        = number
  default     = 2000
}

variable "jwks_url" {
  description = "JWKS_URL of the edge: the https URL of the identity provider's key set (JWKS), which the edge's jwt provider verifies tokens with. Fetched at start and hourly; unreachable, the edge still serves anonymous requests and refuses tokens."
  type        = string

  validation {
    condition     = startswith(var.jwks_url, "https://")
    error_message = "jwks_url must be an https:// URL."
  }
}

variable "jwt_issuer" {
  description = "JWT_ISSUER of the edge: the iss claim the identity provider puts in its tokens; the edge refuses tokens of any other issuer."
  type        = string

  validation {
    condition     = var.jwt_issuer != ""
    error_message = "jwt_issuer must name the identity provider's issuer."
  }
}

variable "container_insights" {
  description = "ECS Container Insights (CPU, memory, network and disk per task and service)."
  type        = bool
}

variable "alerting" {
  description = "Create the seed's nine CloudWatch alarms (infra/monitoring/rules/alerts.yml: 5xx rate, p95 latency, database down, service unavailable, CPU, memory, replica lag) and their SNS topics: critical (pager_endpoint) and warning (warning_emails, warning_chat_endpoint)."
  type        = bool
}

variable "pager_endpoint" {
  description = "HTTPS endpoint the critical topic pages the on-call through: the CloudWatch integration URL of PagerDuty or Opsgenie (it holds the integration key: pass it as TF_VAR_pager_endpoint, never in terraform.tfvars). Required with alerting."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.pager_endpoint == "" || startswith(var.pager_endpoint, "https://")
    error_message = "pager_endpoint must be an https:// URL."
  }
}

variable "warning_emails" {
  description = "Email addresses subscribed to the warning topic (each confirms its subscription)."
  type        = list(string)
  default     = []
}

variable "warning_chat_endpoint" {
  description = "HTTPS endpoint subscribed to the warning topic for chat (a Slack or Teams webhook relay, or AWS Chatbot's); empty for email only. Pass it as TF_VAR_warning_chat_endpoint."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.warning_chat_endpoint == "" || startswith(var.warning_chat_endpoint, "https://")
    error_message = "warning_chat_endpoint must be an https:// URL."
  }
}

variable "sentry_dsn" {
  description = "DSN of the app server's Sentry project (SENTRY_DSN), stored as the secret muejam/ENVIRONMENT/sentry-dsn, which the app server's task role may read; the app server gets SENTRY_DSN=aws-sm:muejam/ENVIRONMENT/sentry-dsn. Empty: no secret, SENTRY_DSN unset, no error events. Pass it as TF_VAR_sentry_dsn."
  type        = string
  default     = ""
  sensitive   = true
}

variable "log_level" {
  description = "LOG_LEVEL of the app server: debug, info, warn or error."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the container logs in CloudWatch Logs."
  type        = number
}

# ECS services

variable "app_cpu" {
  description = "CPU units of an app server task."
  type        = number
}

variable "app_memory" {
  description = "Memory of an app server task, in MiB."
  type        = number
}

variable "app_desired_count" {
  description = "App server tasks at creation."
  type        = number
}

variable "app_min_capacity" {
  description = "Fewest app server tasks."
  type        = number
}

variable "app_max_capacity" {
  description = "Most app server tasks."
  type        = number
}

variable "edge_cpu" {
  description = "CPU units of an edge task."
  type        = number
}

variable "edge_memory" {
  description = "Memory of an edge task, in MiB."
  type        = number
}

variable "edge_desired_count" {
  description = "Edge tasks at creation."
  type        = number
}

variable "edge_min_capacity" {
  description = "Fewest edge tasks."
  type        = number
}

variable "edge_max_capacity" {
  description = "Most edge tasks."
  type        = number
}

variable "autoscaling_cpu_target" {
  description = "Average CPU utilization (%) autoscaling tracks."
  type        = number
}

variable "autoscaling_memory_target" {
  description = "Average memory utilization (%) autoscaling tracks."
  type        = number
}

# Database

variable "db_engine_version" {
  description = "PostgreSQL major version."
  type        = string
}

variable "db_instance_class" {
  description = "Instance class of the primary and the replicas."
  type        = string
}

variable "db_allocated_storage" {
  description = "Initial database storage, in GiB."
  type        = number
}

variable "db_max_allocated_storage" {
  description = "Database storage autoscaling ceiling, in GiB."
  type        = number
}

variable "db_username" {
  description = "Master user of the database: the migration role, used by the migration task only."
  type        = string
  default     = "muejam"
}

variable "db_app_username" {
  description = "Login role of the app server (a member of muejam_app: DML only), which the migration task creates; its password is in muejam/ENVIRONMENT/database."
  type        = string
  default     = "muejam_api"
}

variable "db_multi_az" {
  description = "Multi-AZ primary with automatic failover."
  type        = bool
}

variable "db_replica_count" {
  description = "Read replicas."
  type        = number
}

variable "db_backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery."
  type        = number
}

variable "db_backup_replication" {
  description = "Replicate the automated backups to backup_region."
  type        = bool
}

variable "db_performance_insights" {
  description = "Performance Insights on the database (not on db.t4g.micro/small)."
  type        = bool
}

variable "deletion_protection" {
  description = "Protect the database and the load balancer from deletion (and keep a final database snapshot)."
  type        = bool
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored."
  type        = number
}

# Valkey

variable "valkey_engine_version" {
  description = "Valkey version."
  type        = string
}

variable "valkey_node_type" {
  description = "Cache node type."
  type        = string
}

variable "valkey_cluster_mode" {
  description = "Valkey cluster mode (sharded); the edge's and the app server's VALKEY_CLUSTER follow it (on or off)."
  type        = bool
}

variable "valkey_shards" {
  description = "Shards in cluster mode."
  type        = number
}

variable "valkey_replicas_per_shard" {
  description = "Replicas per shard (or of the single primary)."
  type        = number
}

variable "valkey_snapshot_retention_days" {
  description = "Days of Valkey snapshots."
  type        = number
}
