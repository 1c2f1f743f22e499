# A Fargate task definition with its image repository, execution and task roles and logs. On
# its own, a one-off task that runs to completion, started by hand or by the deploy: the
# database migration (docker/migrate.Dockerfile). modules/ecs-service builds a long-running
# service on it. ECS injects var.secrets into the container; the execution role may read those
# secrets and no others. The task role has var.task_policies (none: the task calls no AWS API).

locals {
  family = "muejam-${var.environment_name}-${var.name}"
  # A secret of var.secrets may name a JSON key of the secret (ARN:KEY::); IAM authorizes the
  # secret's ARN alone.
  secret_arns = sort([for v in values(var.secrets) : regex("^arn:[^:]+:secretsmanager:[^:]+:[^:]+:secret:[^:]+", v)])
}

resource "aws_ecr_repository" "this" {
  name                 = "muejam/${var.name}"
  image_tag_mutability = "IMMUTABLE"
  tags                 = var.tags

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = var.image_retention_description
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/muejam/${var.environment_name}/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.family}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "ecs-task-execution"
  role   = aws_iam_role.execution.id
  policy = var.execution_policy
}

# The execution role reads the secrets ECS injects at task start: exactly the secrets of
# var.secrets, named by ARN, not a pattern (a pattern under muejam/ would also cover the
# other environments' secrets). Generated here rather than in infra/iam-policies/ because the
# ARNs, with the suffix Secrets Manager adds, exist only once the secrets do.
resource "aws_iam_role_policy" "execution_secrets" {
  count = length(var.secrets) > 0 ? 1 : 0
  name  = "read-injected-secrets"
  role  = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ReadInjectedSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = local.secret_arns
    }]
  })
}

resource "aws_iam_role" "task" {
  name               = "${local.family}-task"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  for_each = var.task_policies
  name     = each.key
  role     = aws_iam_role.task.id
  policy   = each.value
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = var.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([merge({
    name                   = var.name
    image                  = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    essential              = true
    command                = length(var.command) > 0 ? var.command : null
    environment            = [for k in sort(keys(var.environment)) : { name = k, value = var.environment[k] }]
    secrets                = length(var.secrets) > 0 ? [for k in sort(keys(var.secrets)) : { name = k, valueFrom = var.secrets[k] }] : null
    readonlyRootFilesystem = true
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = var.region
        awslogs-stream-prefix = var.name
      }
    }
  }, var.container)])
}
