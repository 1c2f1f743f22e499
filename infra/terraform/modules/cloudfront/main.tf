# CloudFront in front of the load balancer: the API passes through and is cached as its
# Cache-Control headers say; static assets come from a versioned S3 bucket and are cached at
# the edge locations. A WAF web ACL (managed rule groups and a per-IP rate rule) guards both.
#
# Every request CloudFront sends to the load balancer carries the origin custom header
# X-Origin-Verify with the CDN origin secret (var.origin_secret, from modules/secrets); the
# load balancer forwards only those to the edge (modules/alb), and the edge then trusts the
# CloudFront-Viewer-Address header, the viewer's own address, which the API's origin request
# policy asks CloudFront to add. A viewer that sends X-Origin-Verify itself gains nothing:
# CloudFront replaces a viewer header of the same name as an origin custom header.

# TLS on both hops: viewers are redirected to HTTPS and, with aliases, get an ACM certificate
# (us-east-1, validated by DNS in the hosted zone) and TLS 1.2 at least (TLSv1.2_2021); the
# load balancer is reached over HTTPS only, TLS 1.2, by the name its certificate covers, when
# it has one (origin_https; only dev has none, and dev has no CloudFront).
locals {
  custom_certificate = length(var.aliases) > 0
}

resource "aws_acm_certificate" "viewer" {
  provider                  = aws.us_east_1
  count                     = local.custom_certificate ? 1 : 0
  domain_name               = var.aliases[0]
  subject_alternative_names = slice(var.aliases, 1, length(var.aliases))
  validation_method         = "DNS"
  tags                      = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "viewer_validation" {
  for_each = {
    for o in flatten(aws_acm_certificate.viewer[*].domain_validation_options) : o.domain_name => {
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

resource "aws_acm_certificate_validation" "viewer" {
  provider                = aws.us_east_1
  count                   = local.custom_certificate ? 1 : 0
  certificate_arn         = aws_acm_certificate.viewer[0].arn
  validation_record_fqdns = [for r in aws_route53_record.viewer_validation : r.fqdn]
}

resource "aws_route53_record" "alias" {
  for_each = toset(var.aliases)
  zone_id  = var.hosted_zone_id
  name     = each.value
  type     = "A"

  alias {
    name                   = aws_cloudfront_distribution.this.domain_name
    zone_id                = aws_cloudfront_distribution.this.hosted_zone_id
    evaluate_target_health = false
  }
}

data "aws_cloudfront_cache_policy" "static" {
  name = "Managed-CachingOptimized"
}

# The API's cache key. Cached only as the edge's Cache-Control allows (default TTL 0: nothing
# without it), and keyed on what makes one viewer's answer differ from another's: the token
# (Authorization, which CloudFront forwards to the origin only through a cache policy; an
# origin request policy may not name it) and the read-your-writes token (the X-Read-Your-Writes
# header or the ryw cookie) with which the edge skips its own cache.
resource "aws_cloudfront_cache_policy" "api" {
  name        = "${var.name}-api"
  comment     = "MueJam API: origin Cache-Control, keyed on the viewer's token and read-your-writes token."
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = 31536000

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = true
    enable_accept_encoding_gzip   = true

    headers_config {
      header_behavior = "whitelist"
      headers {
        items = ["Authorization", "X-Read-Your-Writes"]
      }
    }

    cookies_config {
      cookie_behavior = "whitelist"
      cookies {
        items = ["ryw"]
      }
    }

    query_strings_config {
      query_string_behavior = "all"
    }
  }
}

# What the API's origin requests carry besides the cache key: the viewer's address as
# CloudFront saw it (CloudFront-Viewer-Address, "ip:port": the edge's client address when the
# request carries the origin secret), the request headers the edge and the app server read,
# every cookie and every query string. Not Host: CloudFront sends the origin's own name, which
# the load balancer's certificate covers. At most 10 headers (a CloudFront quota); Authorization
# and X-Read-Your-Writes travel through the cache policy.
resource "aws_cloudfront_origin_request_policy" "api" {
  name    = "${var.name}-api"
  comment = "MueJam API: the viewer's address and the request headers the edge and the app server read."

  headers_config {
    header_behavior = "whitelist"
    headers {
      items = [
        "CloudFront-Viewer-Address",
        "Accept",
        "Content-Type",
        "If-Match",
        "If-Modified-Since",
        "If-None-Match",
        "User-Agent",
      ]
    }
  }

  cookies_config {
    cookie_behavior = "all"
  }

  query_strings_config {
    query_string_behavior = "all"
  }
}

resource "aws_s3_bucket" "static" {
  bucket_prefix = "${var.name}-static-"
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "static" {
  bucket = aws_s3_bucket.static.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "static" {
  bucket                  = aws_s3_bucket.static.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "static" {
  bucket = aws_s3_bucket.static.id
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }
}

resource "aws_cloudfront_origin_access_control" "static" {
  name                              = "${var.name}-static"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_s3_bucket_policy" "static" {
  bucket = aws_s3_bucket.static.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "CloudFrontReadsStaticAssets"
      Effect    = "Allow"
      Principal = { Service = "cloudfront.amazonaws.com" }
      Action    = "s3:GetObject"
      Resource  = "${aws_s3_bucket.static.arn}/*"
      Condition = { StringEquals = { "AWS:SourceArn" = aws_cloudfront_distribution.this.arn } }
    }]
  })
}

resource "aws_wafv2_web_acl" "this" {
  provider = aws.us_east_1
  name     = var.name
  scope    = "CLOUDFRONT"
  tags     = var.tags

  default_action {
    allow {}
  }

  rule {
    name     = "per-ip-rate"
    priority = 0
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-per-ip-rate"
      sampled_requests_enabled   = true
    }
  }

  dynamic "rule" {
    for_each = { 1 = "AWSManagedRulesCommonRuleSet", 2 = "AWSManagedRulesKnownBadInputsRuleSet", 3 = "AWSManagedRulesAmazonIpReputationList" }
    content {
      name     = rule.value
      priority = tonumber(rule.key)
      override_action {
        none {}
      }
      statement {
        managed_rule_group_statement {
          vendor_name = "AWS"
          name        = rule.value
        }
      }
      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.name}-${rule.value}"
        sampled_requests_enabled   = true
      }
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

resource "aws_cloudfront_distribution" "this" {
  enabled         = true
  is_ipv6_enabled = true
  http_version    = "http2and3"
  comment         = "MueJam ${var.name}"
  aliases         = var.aliases
  price_class     = var.price_class
  web_acl_id      = aws_wafv2_web_acl.this.arn
  tags            = var.tags

  origin {
    origin_id   = "edge"
    domain_name = var.origin_domain_name

    # The proof that a request came through this distribution (modules/alb, client_address).
    custom_header {
      name  = "X-Origin-Verify"
      value = var.origin_secret
    }

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = var.origin_https ? "https-only" : "http-only"
      origin_ssl_protocols   = ["TLSv1.2"]
    }
  }

  origin {
    origin_id                = "static"
    domain_name              = aws_s3_bucket.static.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.static.id
  }

  # The API: cached only as the edge's Cache-Control allows, keyed per token; the edge sees
  # the viewer's address, token and request headers (the api policies above).
  default_cache_behavior {
    target_origin_id         = "edge"
    viewer_protocol_policy   = "redirect-to-https"
    allowed_methods          = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods           = ["GET", "HEAD"]
    compress                 = true
    cache_policy_id          = aws_cloudfront_cache_policy.api.id
    origin_request_policy_id = aws_cloudfront_origin_request_policy.api.id
  }

  ordered_cache_behavior {
    path_pattern           = var.static_path_pattern
    target_origin_id       = "static"
    viewer_protocol_policy = "redirect-to-https"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    compress               = true
    cache_policy_id        = data.aws_cloudfront_cache_policy.static.id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  # CloudFront's default certificate allows no minimum above TLSv1.
  viewer_certificate {
    cloudfront_default_certificate = !local.custom_certificate
    acm_certificate_arn            = local.custom_certificate ? aws_acm_certificate_validation.viewer[0].certificate_arn : null
    ssl_support_method             = local.custom_certificate ? "sni-only" : null
    minimum_protocol_version       = local.custom_certificate ? "TLSv1.2_2021" : "TLSv1"
  }
}
