# dev: single instance, minimal resources, debug logging, no CDN.
environment       = "dev"
region            = "eu-west-1"
backup_region     = "eu-west-1"
github_repository = "muejam/edge"

vpc_cidr           = "10.10.0.0/16"
az_count           = 2
single_nat_gateway = true

enable_cdn         = false
container_insights = false
alerting           = false
log_level          = "debug"
log_retention_days = 7

# The identity provider whose tokens the edge accepts (audience muejam-edge).
jwks_url   = "https://auth.dev.muejam.internal/.well-known/jwks.json"
jwt_issuer = "https://auth.dev.muejam.internal/"

app_cpu            = 256
app_memory         = 512
app_desired_count  = 1
app_min_capacity   = 1
app_max_capacity   = 1
edge_cpu           = 256
edge_memory        = 512
edge_desired_count = 1
edge_min_capacity  = 1
edge_max_capacity  = 1

autoscaling_cpu_target    = 70
autoscaling_memory_target = 80

db_engine_version        = "16"
db_instance_class        = "db.t4g.micro"
db_allocated_storage     = 20
db_max_allocated_storage = 50
db_multi_az              = false
db_replica_count         = 0
db_backup_retention_days = 7
db_performance_insights  = false
db_backup_replication    = false
deletion_protection      = false

secret_recovery_window_days = 0

valkey_engine_version          = "8.0"
valkey_node_type               = "cache.t4g.micro"
valkey_cluster_mode            = false
valkey_shards                  = 1
valkey_replicas_per_shard      = 0
valkey_snapshot_retention_days = 0
