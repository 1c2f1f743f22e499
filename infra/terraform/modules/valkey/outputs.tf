output "address" {
  description = "host:port the clients connect to: the configuration endpoint in cluster mode, else the primary endpoint."
  value = format("%s:%d",
    var.cluster_mode ? aws_elasticache_replication_group.this.configuration_endpoint_address : aws_elasticache_replication_group.this.primary_endpoint_address,
    aws_elasticache_replication_group.this.port,
  )
}
