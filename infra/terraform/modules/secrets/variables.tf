variable "environment_name" {
  description = "Environment: dev, staging or production. Every secret is named muejam/ENVIRONMENT/..."
  type        = string
}

variable "database_username" {
  description = "Master user of the database: the migration role."
  type        = string
}

variable "database_app_username" {
  description = "Login role of the app server (a member of muejam_app, DML only), stored with its password in muejam/ENVIRONMENT/database."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.database_app_username))
    error_message = "database_app_username must be a lower-case PostgreSQL identifier."
  }
}

variable "sentry_dsn" {
  description = "DSN of the app server's Sentry project, stored as muejam/ENVIRONMENT/sentry-dsn; empty for no secret (and no error events)."
  type        = string
  default     = ""
  sensitive   = true
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
