# production: high availability in three zones, autoscaling 2-20 tasks on 70 % CPU, Multi-AZ
# database with two read replicas, 30 days of backups replicated to a second region, Valkey
# cluster mode, full monitoring and alerting, CDN with edge caching.
environment       = "production"
region            = "eu-west-1"
backup_region     = "eu-central-1"
github_repository = "muejam/edge"

vpc_cidr           = "10.30.0.0/16"
az_count           = 3
single_nat_gateway = false

enable_cdn         = true
cdn_price_class    = "PriceClass_All"
container_insights = true
alerting           = true
log_level          = "info"
log_retention_days = 90

# TLS on every hop (modules/alb, modules/cloudfront): ACM certificates validated by DNS in this
# public hosted zone, for the load balancer's name (CloudFront's HTTPS-only origin) and for the
# distribution's aliases (viewers on TLS 1.2+). The zone must exist and be delegated.
dns_zone_name   = "muejam.com"
alb_domain_name = "origin.muejam.com"
cdn_aliases     = ["muejam.com", "www.muejam.com"]

# Warnings go to the team's list (and TF_VAR_warning_chat_endpoint); critical alarms page
# through TF_VAR_pager_endpoint, set where terraform apply runs (never in this file).
warning_emails = ["oncall@muejam.example"]

# The identity provider whose tokens the edge accepts (audience muejam-edge).
jwks_url   = "https://auth.muejam.internal/.well-known/jwks.json"
jwt_issuer = "https://auth.muejam.internal/"

app_cpu            = 1024
app_memory         = 2048
app_desired_count  = 4
app_min_capacity   = 2
app_max_capacity   = 20
edge_cpu           = 1024
edge_memory        = 2048
edge_desired_count = 4
edge_min_capacity  = 2
edge_max_capacity  = 20

autoscaling_cpu_target    = 70
autoscaling_memory_target = 80

db_engine_version        = "16"
db_instance_class        = "db.r6g.large"
db_allocated_storage     = 200
db_max_allocated_storage = 1000
db_multi_az              = true
db_replica_count         = 2
db_backup_retention_days = 30
db_performance_insights  = true
db_backup_replication    = true
deletion_protection      = true

secret_recovery_window_days = 30

valkey_engine_version          = "8.0"
valkey_node_type               = "cache.r7g.large"
valkey_cluster_mode            = true
valkey_shards                  = 2
valkey_replicas_per_shard      = 1
valkey_snapshot_retention_days = 7
