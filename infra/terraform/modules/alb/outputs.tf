output "dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "https" {
  description = "Whether the load balancer has an HTTPS listener."
  value       = local.https
}

output "target_group_arn" {
  description = "Target group the edge service registers its tasks in."
  value       = aws_lb_target_group.edge.arn
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer, the LoadBalancer dimension of its CloudWatch metrics."
  value       = aws_lb.this.arn_suffix
}

output "origin_domain_name" {
  description = "The name CloudFront reaches the load balancer by: domain_name, which its certificate covers, with HTTPS; else the load balancer's own DNS name."
  value       = local.https ? var.domain_name : aws_lb.this.dns_name
}
