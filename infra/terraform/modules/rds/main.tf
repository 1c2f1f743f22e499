# PostgreSQL on RDS: a primary (Multi-AZ where asked), read replicas, automated backups with
# point-in-time recovery, and their replication to a second region. Every connection must
# use TLS (rds.force_ssl).

locals {
  major = split(".", var.engine_version)[0]
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-postgres${local.major}"
  family = "postgres${local.major}"
  tags   = var.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Slow statements in the postgresql log, exported to CloudWatch Logs.
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  # No bind parameter values in those logs (emails, tokens, text people wrote): neither in
  # the statements logged as slow nor in the statements of logged errors.
  parameter {
    name  = "log_parameter_max_length"
    value = "0"
  }

  parameter {
    name  = "log_parameter_max_length_on_error"
    value = "0"
  }
}

resource "aws_db_instance" "primary" {
  identifier                      = var.name
  engine                          = "postgres"
  engine_version                  = var.engine_version
  auto_minor_version_upgrade      = true
  instance_class                  = var.instance_class
  allocated_storage               = var.allocated_storage
  max_allocated_storage           = var.max_allocated_storage
  storage_type                    = "gp3"
  storage_encrypted               = true
  db_name                         = var.database_name
  username                        = var.username
  password                        = var.password
  multi_az                        = var.multi_az
  db_subnet_group_name            = aws_db_subnet_group.this.name
  vpc_security_group_ids          = [var.security_group_id]
  parameter_group_name            = aws_db_parameter_group.this.name
  publicly_accessible             = false
  backup_retention_period         = var.backup_retention_days
  backup_window                   = "03:00-04:00"
  maintenance_window              = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot           = true
  deletion_protection             = var.deletion_protection
  skip_final_snapshot             = !var.deletion_protection
  final_snapshot_identifier       = var.deletion_protection ? "${var.name}-final" : null
  performance_insights_enabled    = var.performance_insights
  enabled_cloudwatch_logs_exports = ["postgresql"]
  tags                            = var.tags
}

resource "aws_db_instance" "replica" {
  count                        = var.replica_count
  identifier                   = "${var.name}-replica-${count.index + 1}"
  replicate_source_db          = aws_db_instance.primary.identifier
  instance_class               = var.instance_class
  storage_encrypted            = true
  vpc_security_group_ids       = [var.security_group_id]
  parameter_group_name         = aws_db_parameter_group.this.name
  auto_minor_version_upgrade   = true
  publicly_accessible          = false
  backup_retention_period      = 0
  skip_final_snapshot          = true
  performance_insights_enabled = var.performance_insights
  tags                         = var.tags
}

# Replicated backups are encrypted with a key of the backup region.
resource "aws_kms_key" "backup" {
  provider                = aws.backup
  count                   = var.backup_replication ? 1 : 0
  description             = "${var.name}: replicated RDS automated backups"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  tags                    = var.tags
}

resource "aws_db_instance_automated_backups_replication" "this" {
  provider               = aws.backup
  count                  = var.backup_replication ? 1 : 0
  source_db_instance_arn = aws_db_instance.primary.arn
  kms_key_id             = aws_kms_key.backup[0].arn
  retention_period       = var.backup_retention_days
}

# The seed's database alerts (infra/monitoring/rules/alerts.yml: ReplicationLagHigh, warning,
# and DatabaseDown, critical, for every node), with the rules' thresholds and durations ("for"
# as consecutive one-minute periods that all breach). Tags Alert and Severity name the rule; a
# test holds each alarm to it.
resource "aws_cloudwatch_metric_alarm" "replica_lag" {
  count               = length(var.warning_actions) > 0 ? var.replica_count : 0
  alarm_name          = "${var.name}-replica-${count.index + 1}-ReplicationLagHigh-warning"
  alarm_description   = "Replica lag above 10 s for 2m (seed: warning; ReplicationLagHigh). The app server stops reading from a lagging replica."
  namespace           = "AWS/RDS"
  metric_name         = "ReplicaLag"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.replica[count.index].identifier }
  statistic           = "Maximum"
  period              = 60
  comparison_operator = "GreaterThanThreshold"
  threshold           = 10
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  alarm_actions       = var.warning_actions
  ok_actions          = var.warning_actions
  tags                = merge(var.tags, { Alert = "ReplicationLagHigh", Severity = "warning" })
}

# RDS ships the WAL to S3 (point-in-time recovery) every 5 minutes; when that, or a replica,
# stalls, the WAL stays on the instance. CloudWatch has no metric of the archive's age (the
# app servers export it from pg_stat_archiver: WALArchiveStale in infra/monitoring), so this
# alarm watches the WAL piling up: more than a tenth of the allocated storage.
resource "aws_cloudwatch_metric_alarm" "wal_backlog" {
  count               = length(var.critical_actions) > 0 ? 1 : 0
  alarm_name          = "${var.name}-wal-backlog-critical"
  alarm_description   = "Transaction logs above 10% of the storage: WAL archiving to S3 (PITR, RPO 5 min) or a replica is stuck. docs/runbooks/disaster-recovery.md"
  namespace           = "AWS/RDS"
  metric_name         = "TransactionLogsDiskUsage"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.primary.identifier }
  statistic           = "Maximum"
  period              = 300
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.allocated_storage * 1073741824 / 10
  evaluation_periods  = 2
  alarm_actions       = var.critical_actions
  ok_actions          = var.critical_actions
  tags                = var.tags
}

# A node that is down reports no metrics: fewer than one DatabaseConnections sample in a minute,
# missing data counting as breaching.
resource "aws_cloudwatch_metric_alarm" "primary_down" {
  count               = length(var.critical_actions) > 0 ? 1 : 0
  alarm_name          = "${var.name}-DatabaseDown-critical"
  alarm_description   = "The primary reports no connections metric for 1m: database down (seed: critical, page on-call; DatabaseDown)."
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.primary.identifier }
  statistic           = "SampleCount"
  period              = 60
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.critical_actions
  ok_actions          = var.critical_actions
  tags                = merge(var.tags, { Alert = "DatabaseDown", Severity = "critical" })
}

resource "aws_cloudwatch_metric_alarm" "replica_down" {
  count               = length(var.critical_actions) > 0 ? var.replica_count : 0
  alarm_name          = "${var.name}-replica-${count.index + 1}-DatabaseDown-critical"
  alarm_description   = "A read replica reports no connections metric for 1m: database node down (seed: critical; DatabaseDown). Reads go to the other nodes."
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.replica[count.index].identifier }
  statistic           = "SampleCount"
  period              = 60
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "breaching"
  alarm_actions       = var.critical_actions
  ok_actions          = var.critical_actions
  tags                = merge(var.tags, { Alert = "DatabaseDown", Severity = "critical" })
}
