output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_family" {
  description = "Family of the task definition, muejam-ENVIRONMENT-NAME: rollback.sh takes a revision of it."
  value       = module.task.task_definition_family
}

output "repository_url" {
  description = "URL of the ECR repository deploy.sh pushes the image to."
  value       = module.task.repository_url
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = module.task.task_role_arn
}

output "execution_role_arn" {
  description = "ARN of the task execution role."
  value       = module.task.execution_role_arn
}

output "service_connect_address" {
  description = "host:port other services of the namespace reach this one at through Service Connect (discovery_name:container_port), or null for a client-only service."
  value       = var.discovery_name == "" ? null : "${var.discovery_name}:${var.container_port}"
}
