variable "name" {
  description = "Identifier of the primary instance and prefix of the replicas', e.g. muejam-staging."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version; minor versions are upgraded automatically."
  type        = string
}

variable "instance_class" {
  description = "Instance class of the primary and of each replica."
  type        = string
}

variable "allocated_storage" {
  description = "Initial storage, in GiB."
  type        = number
}

variable "max_allocated_storage" {
  description = "Storage autoscaling ceiling, in GiB."
  type        = number
}

variable "database_name" {
  description = "Name of the database the app server uses."
  type        = string
}

variable "username" {
  description = "Master user name."
  type        = string
}

variable "password" {
  description = "Master password (from the secrets module)."
  type        = string
  sensitive   = true
}

variable "multi_az" {
  description = "Keep a synchronous standby in another availability zone with automatic failover."
  type        = bool
}

variable "replica_count" {
  description = "Number of read replicas; the app server routes reads to them."
  type        = number
}

variable "backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery (1-35)."
  type        = number

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35: 0 would disable backups and point-in-time recovery."
  }
}

variable "backup_replication" {
  description = "Replicate automated backups (snapshots and transaction logs) to the region of the aws.backup provider."
  type        = bool
}

variable "performance_insights" {
  description = "Performance Insights on the primary and the replicas (not available on the smallest instance classes)."
  type        = bool
}

variable "subnet_ids" {
  description = "Private subnets of the database, in at least two availability zones."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the database."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to delete the primary, and keep a final snapshot when it is deleted."
  type        = bool
}

variable "critical_actions" {
  description = "SNS topics the critical alarms notify (database down, WAL backlog); empty for none."
  type        = list(string)
  default     = []
}

variable "warning_actions" {
  description = "SNS topics the warning alarms notify (replica lag above 10 s); empty for none."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
