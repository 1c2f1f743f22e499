variable "region" {
  description = "Region of the state buckets and lock tables: the region of every backend.tf."
  type        = string
  default     = "us-east-1"
}

variable "environments" {
  description = "Environments whose state backends this account holds."
  type        = list(string)
  default     = ["dev", "staging", "production"]
}
