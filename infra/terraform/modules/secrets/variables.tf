variable "environment_name" {
  description = "Environment: dev, staging or production. Every secret is named muejam/ENVIRONMENT/..."
  type        = string
}

variable "database_username" {
  description = "Master user of the database."
  type        = string
}

variable "recovery_window_days" {
  description = "Days a deleted secret can be restored (0 deletes at once)."
  type        = number
}

variable "replica_region" {
  description = "Region every secret is replicated to (the disaster-recovery region); null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
