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
    migrate   = module.migrate.repository_url
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

output "alert_topic_arns" {
  description = "SNS topics of the alarms by severity (critical: the pager; warning: email and chat), or null without alerting."
  value       = var.alerting ? { critical = aws_sns_topic.critical[0].arn, warning = aws_sns_topic.warning[0].arn } : null
}

output "migrate_task" {
  description = "How the deploy runs the database migration (docs/deployment.md): aws ecs run-task --cluster CLUSTER --task-definition FAMILY --launch-type FARGATE with these subnets and security groups, no public IP."
  value = {
    cluster         = aws_ecs_cluster.this.name
    family          = module.migrate.task_definition_family
    repository_url  = module.migrate.repository_url
    subnets         = module.network.private_subnet_ids
    security_groups = [module.network.security_group_ids["appserver"]]
  }
}
