variable "name" {
  description = "Name of the service and of its container: edge or appserver. The ECR repository is muejam/NAME."
  type        = string
}

variable "environment_name" {
  description = "Environment: dev, staging or production. The task definition family is muejam-ENVIRONMENT-NAME."
  type        = string
}

variable "region" {
  description = "AWS region of the service, for the awslogs driver."
  type        = string
}

variable "cluster_id" {
  description = "ARN of the ECS cluster."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster (muejam-ENVIRONMENT), for autoscaling."
  type        = string
}

variable "image_tag" {
  description = "Image tag of the first task definition. scripts/deployment/deploy.sh registers later revisions; Terraform ignores them."
  type        = string
}

variable "cpu" {
  description = "CPU units of a task (1024 = one vCPU)."
  type        = number
}

variable "memory" {
  description = "Memory of a task, in MiB."
  type        = number
}

variable "container_port" {
  description = "Port the container serves on; its port mapping is named http."
  type        = number
}

variable "metrics_port" {
  description = "Port of the container's internal metrics listener, named metrics; 0 for none."
  type        = number
  default     = 0
}

variable "command" {
  description = "Arguments to the image's entrypoint; empty keeps the image's."
  type        = list(string)
  default     = []
}

variable "environment" {
  description = "Environment variables of the container. No secrets: pass those in secrets, or let the container read them itself (DATABASE_PASSWORD=aws-sm:...)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables of the container that ECS sets at task start from Secrets Manager: name => ARN of a secret whose whole value is the variable's (no JSON key). The execution role may read these secrets and no others; their values are in no task definition."
  type        = map(string)
  default     = {}
}

variable "desired_count" {
  description = "Tasks at creation; autoscaling moves it between min_capacity and max_capacity afterwards."
  type        = number
}

variable "min_capacity" {
  description = "Fewest tasks autoscaling keeps."
  type        = number
}

variable "max_capacity" {
  description = "Most tasks autoscaling starts. Equal to min_capacity: no autoscaling."
  type        = number
}

variable "cpu_target" {
  description = "Average CPU utilization (%) autoscaling tracks."
  type        = number
}

variable "memory_target" {
  description = "Average memory utilization (%) autoscaling tracks."
  type        = number
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "load_balanced" {
  description = "Register the tasks in target_group_arn."
  type        = bool
  default     = false
}

variable "target_group_arn" {
  description = "Target group of the load balancer, when load_balanced."
  type        = string
  default     = null
}

variable "service_connect_namespace_arn" {
  description = "Cloud Map namespace of ECS Service Connect, through which the edge reaches the app server as appserver:8081."
  type        = string
}

variable "discovery_name" {
  description = "Name this service is reachable by through Service Connect; empty for a client-only service."
  type        = string
  default     = ""
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

variable "log_retention_days" {
  description = "Retention of the container logs in CloudWatch Logs."
  type        = number
}

variable "read_only_root_filesystem" {
  description = "Mount the container's root file system read-only (the app server writes nothing)."
  type        = bool
  default     = true
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL; longer than the app server's SHUTDOWN_TIMEOUT."
  type        = number
  default     = 30
}

variable "critical_actions" {
  description = "SNS topics the critical alarm (no task running) notifies; empty for none."
  type        = list(string)
  default     = []
}

variable "warning_actions" {
  description = "SNS topics the CPU and memory warnings (> 80 %) notify; empty for none."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
