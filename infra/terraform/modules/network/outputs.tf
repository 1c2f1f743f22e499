output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets, one per availability zone."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets, one per availability zone."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security group ID of each tier: alb, edge, appserver, database, valkey, monitoring."
  value       = { for tier, sg in aws_security_group.this : tier => sg.id }
}
