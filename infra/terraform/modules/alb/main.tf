# The application load balancer in front of the edge (the custom Caddy) tasks, and the
# seed's critical alerts on what it sees: error rate above 5 % and p95 latency above 2 s.
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
  https = var.certificate_arn != ""
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

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

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

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  count               = length(var.alarm_actions) > 0 ? 1 : 0
  alarm_name          = "${var.name}-5xx-rate-critical"
  alarm_description   = "More than 5 % of requests answered 5xx by the edge (seed: critical, page on-call)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    label       = "5xx rate (%)"
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
  count               = length(var.alarm_actions) > 0 ? 1 : 0
  alarm_name          = "${var.name}-p95-latency-critical"
  alarm_description   = "p95 response time above 2 s (seed: critical, page on-call)."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  extended_statistic  = "p95"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = 2
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}
