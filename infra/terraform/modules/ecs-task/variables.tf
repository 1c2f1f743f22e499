variable "name" {
  description = "Name of the task and of its container, e.g. migrate. The ECR repository is muejam/NAME, the family muejam-ENVIRONMENT-NAME."
  type        = string
}

variable "environment_name" {
  description = "Environment: dev, staging or production."
  type        = string
}

variable "region" {
  description = "AWS region of the task, for the awslogs driver."
  type        = string
}

variable "image_tag" {
  description = "Image tag of the first task definition; the deploy registers later revisions."
  type        = string
}

variable "cpu" {
  description = "CPU units of the task (1024 = one vCPU)."
  type        = number
  default     = 256
}

variable "memory" {
  description = "Memory of the task, in MiB."
  type        = number
  default     = 512
}

variable "command" {
  description = "Arguments to the image's entrypoint; empty keeps the image's."
  type        = list(string)
  default     = []
}

variable "environment" {
  description = "Environment variables of the container. No secrets: pass those in secrets."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables ECS sets at task start from Secrets Manager: name => ARN of a secret, or ARN:JSON_KEY:: for one key of a JSON secret. The execution role may read these secrets and no others."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for v in values(var.secrets) : can(regex("^arn:[^:]+:secretsmanager:[^:]+:[^:]+:secret:[^:]+(:[^:]*::)?$", v))])
    error_message = "secrets must be Secrets Manager ARNs, optionally followed by :JSON_KEY::."
  }
}

variable "execution_policy" {
  description = "IAM policy JSON of the task execution role (image pull, logs): infra/iam-policies/ecs-task-execution-policy.json."
  type        = string
}

variable "task_policies" {
  description = "IAM policy JSON documents of the task role, by name, read from infra/iam-policies/; empty for a task that calls no AWS API."
  type        = map(string)
  default     = {}
}

variable "container" {
  description = "More fields of the container definition, by ECS's names, over the module's (readonlyRootFilesystem = true): modules/ecs-service's portMappings, readonlyRootFilesystem and stopTimeout."
  type        = any
  default     = {}
}

variable "image_retention_description" {
  description = "Description of the ECR lifecycle rule that keeps the last 50 images."
  type        = string
  default     = "Keep the last 50 images, as the services' repositories."
}

variable "log_retention_days" {
  description = "Retention of the task's logs in CloudWatch Logs."
  type        = number
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
