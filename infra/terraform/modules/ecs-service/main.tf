# One Fargate service (the edge or the app server) on the task definition, image repository,
# roles and logs of modules/ecs-task: the service, autoscaling on CPU and memory, and the
# seed's CPU/memory warnings. Secrets that ECS injects into the container (var.secrets) are
# readable by the execution role, and only those.

locals {
  family      = "muejam-${var.environment_name}-${var.name}"
  autoscaling = var.max_capacity > var.min_capacity

  ports = concat(
    [{ name = "http", containerPort = var.container_port, protocol = "tcp" }],
    var.metrics_port > 0 ? [{ name = "metrics", containerPort = var.metrics_port, protocol = "tcp" }] : [],
  )
}

# The image repository, logs, roles and task definition: modules/ecs-task, with the service's
# ports, root file system and stop timeout.
module "task" {
  source                      = "../ecs-task"
  name                        = var.name
  environment_name            = var.environment_name
  region                      = var.region
  image_tag                   = var.image_tag
  cpu                         = var.cpu
  memory                      = var.memory
  command                     = var.command
  environment                 = var.environment
  secrets                     = var.secrets
  execution_policy            = var.execution_policy
  task_policies               = var.task_policies
  log_retention_days          = var.log_retention_days
  image_retention_description = "Keep the last 50 images: enough to roll back through scripts/deployment/rollback.sh."
  tags                        = var.tags
  container = {
    portMappings           = local.ports
    readonlyRootFilesystem = var.read_only_root_filesystem
    stopTimeout            = var.stop_timeout
  }
}

# Where these resources stood before module.task made them: existing environments move
# them, with no destroy and create.
moved {
  from = aws_ecr_repository.this
  to   = module.task.aws_ecr_repository.this
}

moved {
  from = aws_ecr_lifecycle_policy.this
  to   = module.task.aws_ecr_lifecycle_policy.this
}

moved {
  from = aws_cloudwatch_log_group.this
  to   = module.task.aws_cloudwatch_log_group.this
}

moved {
  from = aws_iam_role.execution
  to   = module.task.aws_iam_role.execution
}

moved {
  from = aws_iam_role_policy.execution
  to   = module.task.aws_iam_role_policy.execution
}

moved {
  from = aws_iam_role_policy.execution_secrets
  to   = module.task.aws_iam_role_policy.execution_secrets
}

moved {
  from = aws_iam_role.task
  to   = module.task.aws_iam_role.task
}

moved {
  from = aws_iam_role_policy.task
  to   = module.task.aws_iam_role_policy.task
}

moved {
  from = aws_ecs_task_definition.this
  to   = module.task.aws_ecs_task_definition.this
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = var.cluster_id
  task_definition                    = module.task.task_definition_arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.load_balanced ? 60 : null
  propagate_tags                     = "SERVICE"
  tags                               = var.tags

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = var.load_balanced ? [1] : []
    content {
      target_group_arn = var.target_group_arn
      container_name   = var.name
      container_port   = var.container_port
    }
  }

  service_connect_configuration {
    enabled   = true
    namespace = var.service_connect_namespace_arn

    dynamic "service" {
      for_each = var.discovery_name == "" ? [] : [1]
      content {
        port_name      = "http"
        discovery_name = var.discovery_name
        client_alias {
          port     = var.container_port
          dns_name = var.discovery_name
        }
      }
    }
  }

  # deploy.sh registers task definition revisions and autoscaling moves the count: a later
  # terraform apply must not undo either.
  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }
}

resource "aws_appautoscaling_target" "this" {
  count              = local.autoscaling ? 1 : 0
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
}

resource "aws_appautoscaling_policy" "cpu" {
  count              = local.autoscaling ? 1 : 0
  name               = "${local.family}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "memory" {
  count              = local.autoscaling ? 1 : 0
  name               = "${local.family}-memory"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.memory_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageMemoryUtilization"
    }
  }
}

# The seed's alerts on a service (infra/monitoring/rules/alerts.yml), with the rules'
# thresholds and durations ("for" as consecutive one-minute periods that all breach): CPU and
# memory above 80 % for 10m (warnings, HighCPUUsage and HighMemoryUsage; AWS/ECS reports
# percents where the rules have ratios) and no task running for 1m (critical,
# ServiceUnavailable; Container Insights' RunningTaskCount, missing data counting as
# breaching as absent() does). Tags Alert and Severity name the rule; a test holds each alarm
# to it.
resource "aws_cloudwatch_metric_alarm" "utilization" {
  for_each            = length(var.warning_actions) > 0 ? { CPUUtilization = "HighCPUUsage", MemoryUtilization = "HighMemoryUsage" } : {}
  alarm_name          = "${local.family}-${each.value}-warning"
  alarm_description   = "${var.name}: average ${each.key} above 80 % for 10m (seed: warning; ${each.value})."
  namespace           = "AWS/ECS"
  metric_name         = each.key
  dimensions          = { ClusterName = var.cluster_name, ServiceName = aws_ecs_service.this.name }
  statistic           = "Average"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  evaluation_periods  = 10
  datapoints_to_alarm = 10
  alarm_actions       = var.warning_actions
  ok_actions          = var.warning_actions
  tags                = merge(var.tags, { Alert = each.value, Severity = "warning" })
}

resource "aws_cloudwatch_metric_alarm" "unavailable" {
  count               = length(var.critical_actions) > 0 ? 1 : 0
  alarm_name          = "${local.family}-ServiceUnavailable-critical"
  alarm_description   = "${var.name}: no task running for 1m (seed: service unavailable, critical; ServiceUnavailable). Needs Container Insights."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = aws_ecs_service.this.name }
  statistic           = "Minimum"
  period              = 60
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.critical_actions
  ok_actions          = var.critical_actions
  tags                = merge(var.tags, { Alert = "ServiceUnavailable", Severity = "critical" })
}
