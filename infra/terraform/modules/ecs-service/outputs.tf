output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_family" {
  description = "Family of the task definition, muejam-ENVIRONMENT-NAME: rollback.sh takes a revision of it."
  value       = aws_ecs_task_definition.this.family
}

output "repository_url" {
  description = "URL of the ECR repository deploy.sh pushes the image to."
  value       = aws_ecr_repository.this.repository_url
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the task execution role."
  value       = aws_iam_role.execution.arn
}

output "service_connect_address" {
  description = "host:port other services of the namespace reach this one at through Service Connect (discovery_name:container_port), or null for a client-only service."
  value       = var.discovery_name == "" ? null : "${var.discovery_name}:${var.container_port}"
}
