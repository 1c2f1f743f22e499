variable "name" {
  description = "Name prefix of every resource, e.g. muejam-staging."
  type        = string
}

variable "cidr_block" {
  description = "CIDR block of the VPC; each subnet is a /24 of it."
  type        = string
}

variable "az_count" {
  description = "Number of availability zones: one public and one private subnet in each. At least 2 (the load balancer and the database subnet groups need two zones)."
  type        = number

  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper, one zone of failure) instead of one per zone."
  type        = bool
}

variable "alb_cloudfront_only" {
  description = "Accept traffic on the load balancer only from CloudFront's origin-facing addresses (true when the CDN is in front)."
  type        = bool
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
