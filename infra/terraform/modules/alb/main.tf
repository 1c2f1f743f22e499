# The application load balancer in front of the edge (the custom Caddy) tasks, its TLS, and the
# seed's alerts on what it sees: error rate above 5 % (critical) and 1 % (warning), p95 latency
# above 2 s (critical) and 1 s (warning).
#
# TLS: with a domain_name, an ACM certificate for it, validated by DNS records in the hosted
# zone, an alias record of the load balancer under that name, an HTTPS listener with a TLS
# 1.2/1.3 policy, and plain HTTP answering only with a 301 to HTTPS. CloudFront reaches the
# load balancer by that name, over HTTPS only (modules/cloudfront). Without a domain_name (dev,
# which has neither a domain nor CloudFront) the load balancer serves plain HTTP.
#
# Only requests that came through our CloudFront distribution reach the edge: CloudFront adds
# the origin header X-Origin-Verify with the CDN origin secret (modules/secrets) to every
# request it sends here, and the listener forwards a request to the edge only when that
# header holds the secret (a listener rule with an http_header condition); every other
# request gets the listener's default answer, a 403 from the load balancer itself. The edge
# checks the same header again (client_address in caddyfiles/production.Caddyfile) before it
# trusts CloudFront-Viewer-Address. The target group's health checks go from the load balancer
# to each task directly, past the listener and its rules, so they need no secret (the edge
# exempts /v1/health from its subnets). An environment without CloudFront (dev) has the same
# gate: whoever calls its load balancer sends the header (the secret is in Secrets Manager).

locals {
  https = var.domain_name != ""
  # The header CloudFront adds (modules/cloudfront) and the edge reads (client_address's
  # default secret_header).
  origin_secret_header = "X-Origin-Verify"
  # The answer to a request that skipped CloudFront. ALB fixed responses take application/json,
  # not application/problem+json.
  refused_body = jsonencode({
    type   = "about:blank"
    title  = "Forbidden"
    status = 403
    detail = "requests must come through the MueJam CDN"
  })
  # The edge answers 502/503 itself when the app server is down or its breaker is open:
  # the edge task is alive, and replacing it would not help, so those count as healthy.
  healthy_codes = "200,502,503"
}

resource "aws_lb" "this" {
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  security_groups            = [var.security_group_id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60
  tags                       = var.tags
}

resource "aws_lb_target_group" "edge" {
  name                 = "${var.name}-edge"
  port                 = var.target_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30
  tags                 = var.tags

  health_check {
    path                = var.health_check_path
    matcher             = local.healthy_codes
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_acm_certificate" "this" {
  count             = local.https ? 1 : 0
  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = {
    for o in flatten(aws_acm_certificate.this[*].domain_validation_options) : o.domain_name => {
      name   = o.resource_record_name
      type   = o.resource_record_type
      record = o.resource_record_value
    }
  }
  zone_id         = var.hosted_zone_id
  name            = each.value.name
  type            = each.value.type
  records         = [each.value.record]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count                   = local.https ? 1 : 0
  certificate_arn         = aws_acm_certificate.this[0].arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}

# domain_name: the name CloudFront connects to, which the certificate covers.
resource "aws_route53_record" "alias" {
  count   = local.https ? 1 : 0
  zone_id = var.hosted_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = false
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = aws_acm_certificate_validation.this[0].certificate_arn

  # Without the origin secret: refused (the rule edge_with_origin_secret forwards).
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = local.refused_body
      status_code  = "403"
    }
  }
}

# With a certificate, plain HTTP only redirects to HTTPS; without one (an environment without
# a domain) it is the listener that serves, behind the same gate as HTTPS.
resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = local.https ? "redirect" : "fixed-response"

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }

    dynamic "fixed_response" {
      for_each = local.https ? [] : [1]
      content {
        content_type = "application/json"
        message_body = local.refused_body
        status_code  = "403"
      }
    }
  }
}

# The one way to the edge: the serving listener forwards a request whose X-Origin-Verify is the
# CDN origin secret. ALB compares header values case-insensitively and treats * and ? as
# wildcards; the secret is letters and digits only (modules/secrets), and the edge compares it
# exactly.
resource "aws_lb_listener_rule" "edge_with_origin_secret" {
  listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
  priority     = 1
  tags         = var.tags

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.edge.arn
  }

  condition {
    http_header {
      http_header_name = local.origin_secret_header
      values           = [var.origin_secret]
    }
  }
}

# The seed's error rate and latency alerts (infra/monitoring/rules/alerts.yml, HighErrorRate and
# HighLatencyP95, by severity), as the load balancer sees the edge's answers: the same
# thresholds, and the same durations ("for") as consecutive one-minute periods that all breach.
# Tags Alert and Severity name the rule; a test holds each alarm to it.
locals {
  error_rate_alarms = {
    critical = { threshold = 0.05, minutes = 5, actions = var.critical_actions }
    warning  = { threshold = 0.01, minutes = 10, actions = var.warning_actions }
  }
  latency_alarms = {
    critical = { threshold = 2, minutes = 5, actions = var.critical_actions }
    warning  = { threshold = 1, minutes = 10, actions = var.warning_actions }
  }
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  for_each            = { for k, v in local.error_rate_alarms : k => v if length(v.actions) > 0 }
  alarm_name          = "${var.name}-HighErrorRate-${each.key}"
  alarm_description   = "More than ${each.value.threshold * 100} % of requests answered 5xx by the edge for ${each.value.minutes}m (seed: ${each.key}; HighErrorRate in infra/monitoring/rules/alerts.yml)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  evaluation_periods  = each.value.minutes
  datapoints_to_alarm = each.value.minutes
  treat_missing_data  = "notBreaching"
  alarm_actions       = each.value.actions
  ok_actions          = each.value.actions
  tags                = merge(var.tags, { Alert = "HighErrorRate", Severity = each.key })

  metric_query {
    id          = "ratio"
    expression  = "IF(requests > 0, errors / requests, 0)"
    label       = "5xx ratio"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = aws_lb.this.arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "latency" {
  for_each            = { for k, v in local.latency_alarms : k => v if length(v.actions) > 0 }
  alarm_name          = "${var.name}-HighLatencyP95-${each.key}"
  alarm_description   = "p95 response time above ${each.value.threshold} s for ${each.value.minutes}m (seed: ${each.key}; HighLatencyP95 in infra/monitoring/rules/alerts.yml)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  extended_statistic  = "p95"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  evaluation_periods  = each.value.minutes
  datapoints_to_alarm = each.value.minutes
  treat_missing_data  = "notBreaching"
  alarm_actions       = each.value.actions
  ok_actions          = each.value.actions
  tags                = merge(var.tags, { Alert = "HighLatencyP95", Severity = each.key })
}
