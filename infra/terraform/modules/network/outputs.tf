output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "IDs of the public subnets, one per availability zone."
  value       = aws_subnet.public[*].id
}

output "public_subnet_cidrs" {
  description = "CIDR blocks of the public subnets (the load balancer's), in the order of public_subnet_ids."
  value       = aws_subnet.public[*].cidr_block
}

output "private_subnet_ids" {
  description = "IDs of the private subnets, one per availability zone."
  value       = aws_subnet.private[*].id
}

output "private_subnet_cidrs" {
  description = "CIDR blocks of the private subnets (the ECS tasks', RDS's and ElastiCache's), in the order of private_subnet_ids."
  value       = aws_subnet.private[*].cidr_block
}

output "security_group_ids" {
  description = "Security group ID of each tier: alb, edge, appserver, database, valkey, monitoring."
  value       = { for tier, sg in aws_security_group.this : tier => sg.id }
}
