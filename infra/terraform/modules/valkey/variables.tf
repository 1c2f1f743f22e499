variable "name" {
  description = "Replication group ID, e.g. muejam-staging."
  type        = string
}

variable "engine_version" {
  description = "Valkey version."
  type        = string
}

variable "node_type" {
  description = "Cache node type."
  type        = string
}

variable "cluster_mode" {
  description = "Shard the keyspace (Valkey cluster mode); the app server and the edge discover the shards from the configuration endpoint."
  type        = bool
}

variable "shards" {
  description = "Number of shards in cluster mode; ignored otherwise."
  type        = number
}

variable "replicas_per_shard" {
  description = "Replicas of each shard (or of the single primary without cluster mode). At least 1 enables automatic failover across zones."
  type        = number
}

variable "snapshot_retention_days" {
  description = "Days of daily snapshots; 0 for none (Valkey holds limiter counters and cache entries, both rebuildable)."
  type        = number
}

variable "auth_token" {
  description = "AUTH token every client must present (ElastiCache AUTH: 16 to 128 printable characters, none of @ \" / %): the secrets module's valkey_auth_token, stored as muejam/ENVIRONMENT/valkey-auth-token."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.auth_token) >= 16 && length(var.auth_token) <= 128 && can(regex("^[!#-$&-.0-?A-~]+$", var.auth_token))
    error_message = "auth_token must be 16 to 128 printable ASCII characters without @, \", / or %."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the cache nodes."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the cache nodes."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
