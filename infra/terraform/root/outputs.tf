output "base_url" {
  description = "Public URL of the environment: what scripts/deployment/smoke-tests.sh checks."
  value = (var.enable_cdn ? "https://${module.cloudfront[0].domain_name}" :
  "${module.alb.https ? "https" : "http"}://${module.alb.dns_name}")
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = module.alb.dns_name
}

output "cloudfront_distribution_id" {
  description = "ID of the CloudFront distribution, or null without a CDN."
  value       = one(module.cloudfront[*].distribution_id)
}

output "ecs_cluster_name" {
  description = "ECS cluster, muejam-ENVIRONMENT: deploy.sh and rollback.sh update its services."
  value       = aws_ecs_cluster.this.name
}

output "repository_urls" {
  description = "ECR repositories deploy.sh pushes to, by service."
  value = {
    appserver = module.appserver.repository_url
    edge      = module.edge.repository_url
  }
}

output "task_definition_families" {
  description = "Task definition families by service: rollback.sh takes a revision of one."
  value = {
    appserver = module.appserver.task_definition_family
    edge      = module.edge.task_definition_family
  }
}

output "database_address" {
  description = "Host name of the PostgreSQL primary."
  value       = module.rds.address
}

output "database_replica_addresses" {
  description = "Host names of the read replicas."
  value       = module.rds.replica_addresses
}

output "database_backup_replication" {
  description = "ARN of the cross-region replicated backups, or null."
  value       = module.rds.backup_replication_arn
}

output "valkey_address" {
  description = "host:port of Valkey."
  value       = module.valkey.address
}

output "secret_arns" {
  description = "Secrets Manager secrets of the environment (muejam/ENVIRONMENT/...)."
  value       = module.secrets.secret_arns
}

output "deploy_role_arn" {
  description = "Role the deploy workflow assumes: set it as AWS_DEPLOY_ROLE_ARN in the GitHub environment."
  value       = aws_iam_role.deploy.arn
}

output "alerts_topic_arn" {
  description = "SNS topic of the alarms (subscribe the pager and the chat), or null."
  value       = one(aws_sns_topic.alerts[*].arn)
}
