output "domain_name" {
  description = "cloudfront.net name of the distribution."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "distribution_id" {
  description = "ID of the distribution, for invalidations."
  value       = aws_cloudfront_distribution.this.id
}

output "static_bucket" {
  description = "Bucket of the static assets."
  value       = aws_s3_bucket.static.bucket
}

output "web_acl_arn" {
  description = "ARN of the WAF web ACL associated with the distribution."
  value       = aws_wafv2_web_acl.this.arn
}
