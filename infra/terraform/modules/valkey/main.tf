# ElastiCache for Valkey: the limiter counters, the L2 cache and the purge fan-out between
# edge nodes. Cluster mode shards it in production.
#
# In-transit encryption is off because VALKEY_ADDR (appserver/config.go) and the edge speak
# plain RESP; the security group admits only the edge and the app server.

locals {
  failover = var.cluster_mode || var.replicas_per_shard > 0
  family   = "default.valkey${split(".", var.engine_version)[0]}"
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "MueJam Valkey of ${var.name}"
  engine                     = "valkey"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  cluster_mode               = var.cluster_mode ? "enabled" : "disabled"
  parameter_group_name       = var.cluster_mode ? "${local.family}.cluster.on" : local.family
  num_node_groups            = var.cluster_mode ? var.shards : null
  replicas_per_node_group    = var.cluster_mode ? var.replicas_per_shard : null
  num_cache_clusters         = var.cluster_mode ? null : 1 + var.replicas_per_shard
  automatic_failover_enabled = local.failover
  multi_az_enabled           = local.failover
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.security_group_id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = false
  snapshot_retention_limit   = var.snapshot_retention_days
  auto_minor_version_upgrade = true
  tags                       = var.tags
}
