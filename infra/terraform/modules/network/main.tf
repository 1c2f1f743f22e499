# The VPC of one environment: public subnets for the load balancer and the NAT gateways,
# private subnets for the ECS tasks, RDS and ElastiCache, and one security group per tier
# that admits only the traffic the tier needs.

data "aws_availability_zones" "available" {
  state = "available"
}

data "aws_ec2_managed_prefix_list" "cloudfront" {
  count = var.alb_cloudfront_only ? 1 : 0
  name  = "com.amazonaws.global.cloudfront.origin-facing"
}

locals {
  azs       = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  nat_count = var.single_nat_gateway ? 1 : var.az_count

  tiers = ["alb", "edge", "appserver", "database", "valkey", "monitoring"]

  # Traffic between tiers: the tier "from" may open TCP connections to port "port" of "to".
  # The monitoring group is for a metrics scraper: only it reaches the edge's metrics
  # listener (:9180, /metrics only; production.Caddyfile's EDGE_METRICS_BIND) and the app
  # server's internal listener (:9081). The edge's admin API (:2019) listens on the task's
  # loopback and no flow reaches it.
  flows = {
    alb_to_edge             = { from = "alb", to = "edge", port = 8080 }
    edge_to_appserver       = { from = "edge", to = "appserver", port = 8081 }
    edge_to_valkey          = { from = "edge", to = "valkey", port = 6379 }
    appserver_to_database   = { from = "appserver", to = "database", port = 5432 }
    appserver_to_valkey     = { from = "appserver", to = "valkey", port = 6379 }
    monitoring_to_edge      = { from = "monitoring", to = "edge", port = 9180 }
    monitoring_to_appserver = { from = "monitoring", to = "appserver", port = 9081 }
  }

  # Tiers that reach AWS APIs (ECR, Secrets Manager, CloudWatch Logs) over HTTPS through NAT.
  https_out = ["edge", "appserver", "monitoring"]
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  count             = var.az_count
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.cidr_block, 8, count.index)
  availability_zone = local.azs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private" {
  count             = var.az_count
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.cidr_block, 8, 100 + count.index)
  availability_zone = local.azs[count.index]
  tags              = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}", Tier = "private" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat-${count.index}" })
}

resource "aws_nat_gateway" "this" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(var.tags, { Name = "${var.name}-${local.azs[count.index]}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
}

resource "aws_route_table_association" "public" {
  count          = var.az_count
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  count  = var.az_count
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[var.single_nat_gateway ? 0 : count.index].id
  }
}

resource "aws_route_table_association" "private" {
  count          = var.az_count
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_security_group" "this" {
  for_each    = toset(local.tiers)
  name        = "${var.name}-${each.key}"
  description = "MueJam ${each.key} tier of ${var.name}"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_vpc_security_group_ingress_rule" "flow" {
  for_each                     = local.flows
  description                  = each.key
  security_group_id            = aws_security_group.this[each.value.to].id
  referenced_security_group_id = aws_security_group.this[each.value.from].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "flow" {
  for_each                     = local.flows
  description                  = each.key
  security_group_id            = aws_security_group.this[each.value.from].id
  referenced_security_group_id = aws_security_group.this[each.value.to].id
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

# HTTP (redirected to HTTPS when the load balancer has a certificate) and HTTPS from the
# internet, or from CloudFront only when the CDN is in front.
resource "aws_vpc_security_group_ingress_rule" "alb_public" {
  for_each          = toset(["80", "443"])
  description       = var.alb_cloudfront_only ? "cloudfront_to_alb" : "internet_to_alb"
  security_group_id = aws_security_group.this["alb"].id
  cidr_ipv4         = var.alb_cloudfront_only ? null : "0.0.0.0/0"
  prefix_list_id    = var.alb_cloudfront_only ? data.aws_ec2_managed_prefix_list.cloudfront[0].id : null
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "https_out" {
  for_each          = toset(local.https_out)
  description       = "${each.key}_to_aws_apis"
  security_group_id = aws_security_group.this[each.key].id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
