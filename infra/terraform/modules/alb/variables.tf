variable "name" {
  description = "Name of the load balancer and prefix of its target group, e.g. muejam-staging (at most 26 characters)."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC of the target group."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets of the load balancer, in at least two availability zones."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "domain_name" {
  description = "DNS name of the load balancer: an ACM certificate for it (validated by DNS in hosted_zone_id), an alias record, and the HTTPS listener. Empty: no certificate, plain HTTP only, for an environment without a domain (dev)."
  type        = string
  default     = ""
}

variable "hosted_zone_id" {
  description = "Route 53 public hosted zone of domain_name: its certificate's validation records and its alias record. Needed with a domain_name."
  type        = string
  default     = null
}

variable "origin_secret" {
  description = "The CDN origin secret (modules/secrets): the listener forwards to the edge only requests whose X-Origin-Verify header holds it. Letters and digits, 16 to 128 of them (the edge wants at least 16 bytes, an ALB header condition at most 128 characters, and * and ? would be wildcards)."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9]{16,128}$", var.origin_secret))
    error_message = "origin_secret must be 16 to 128 letters and digits."
  }
}

variable "target_port" {
  description = "Port of the edge containers the load balancer forwards to."
  type        = number
}

variable "health_check_path" {
  description = "Path the load balancer requests from each edge task."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer."
  type        = bool
}

variable "critical_actions" {
  description = "SNS topics the critical alarms notify (the pager); empty for no critical alarms."
  type        = list(string)
  default     = []
}

variable "warning_actions" {
  description = "SNS topics the warning alarms notify (email, chat); empty for no warning alarms."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
