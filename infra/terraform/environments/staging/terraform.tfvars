# staging: production-like with reduced capacity (two tasks per service, one read replica,
# no Multi-AZ), full monitoring and alerting, CDN.
environment       = "staging"
region            = "eu-west-1"
backup_region     = "eu-west-1"
github_repository = "muejam/edge"

vpc_cidr           = "10.20.0.0/16"
az_count           = 2
single_nat_gateway = true

enable_cdn         = true
container_insights = true
alerting           = true
log_level          = "info"
log_retention_days = 30

# TLS on every hop (modules/alb, modules/cloudfront): ACM certificates validated by DNS in this
# public hosted zone, for the load balancer's name (CloudFront's HTTPS-only origin) and for the
# distribution's aliases (viewers on TLS 1.2+). The zone must exist and be delegated.
dns_zone_name   = "staging.muejam.com"
alb_domain_name = "origin.staging.muejam.com"
cdn_aliases     = ["staging.muejam.com"]

# Warnings go to the team's list (and TF_VAR_warning_chat_endpoint); critical alarms page
# through TF_VAR_pager_endpoint, set where terraform apply runs (never in this file).
warning_emails = ["oncall@muejam.example"]

# The identity provider whose tokens the edge accepts (audience muejam-edge).
jwks_url   = "https://auth.staging.muejam.internal/.well-known/jwks.json"
jwt_issuer = "https://auth.staging.muejam.internal/"

app_cpu            = 512
app_memory         = 1024
app_desired_count  = 2
app_min_capacity   = 2
app_max_capacity   = 4
edge_cpu           = 512
edge_memory        = 1024
edge_desired_count = 2
edge_min_capacity  = 2
edge_max_capacity  = 4

autoscaling_cpu_target    = 70
autoscaling_memory_target = 80

db_engine_version        = "16"
db_instance_class        = "db.t4g.medium"
db_allocated_storage     = 50
db_max_allocated_storage = 200
db_multi_az              = false
db_replica_count         = 1
db_backup_retention_days = 14
db_performance_insights  = true
db_backup_replication    = false
deletion_protection      = true

secret_recovery_window_days = 7

valkey_engine_version          = "8.0"
valkey_node_type               = "cache.t4g.small"
valkey_cluster_mode            = false
valkey_shards                  = 1
valkey_replicas_per_shard      = 1
valkey_snapshot_retention_days = 1
