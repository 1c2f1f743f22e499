variable "name" {
  description = "Name prefix, e.g. muejam-staging."
  type        = string
}

variable "origin_domain_name" {
  description = "DNS name of the load balancer in front of the edge: with origin_https, the name its certificate covers."
  type        = string
}

variable "origin_https" {
  description = "The load balancer has an HTTPS listener: CloudFront talks HTTPS to it."
  type        = bool
}

variable "origin_secret" {
  description = "The CDN origin secret (modules/secrets): CloudFront sends it to the origin as X-Origin-Verify on every request, the proof the load balancer and the edge require."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9]{16,128}$", var.origin_secret))
    error_message = "origin_secret must be 16 to 128 letters and digits."
  }
}

variable "aliases" {
  description = "Domain names of the distribution, in hosted_zone_id: an ACM certificate (us-east-1) for them, validated by DNS, their alias records, and viewers on TLS 1.2 or newer. Empty for the cloudfront.net name only."
  type        = list(string)
  default     = []
}

variable "hosted_zone_id" {
  description = "Route 53 public hosted zone of aliases: the certificate's validation records and the alias records. Needed with aliases."
  type        = string
  default     = null
}

variable "static_path_pattern" {
  description = "Paths served from the static assets bucket and cached at the edge locations."
  type        = string
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
}

variable "waf_rate_limit" {
  description = "Requests per client IP per 5 minutes above which WAF blocks (volumetric abuse, DDoS)."
  type        = number
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
