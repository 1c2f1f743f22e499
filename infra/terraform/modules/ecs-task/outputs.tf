output "task_definition_family" {
  description = "Family of the task definition, muejam-ENVIRONMENT-NAME: aws ecs run-task --task-definition FAMILY runs its latest revision."
  value       = aws_ecs_task_definition.this.family
}

output "repository_url" {
  description = "URL of the ECR repository the deploy pushes the task's image to."
  value       = aws_ecr_repository.this.repository_url
}

output "execution_role_arn" {
  description = "ARN of the task execution role."
  value       = aws_iam_role.execution.arn
}

output "task_definition_arn" {
  description = "ARN of the task definition's revision Terraform registered."
  value       = aws_ecs_task_definition.this.arn
}

output "task_role_arn" {
  description = "ARN of the task role."
  value       = aws_iam_role.task.arn
}
