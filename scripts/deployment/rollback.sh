#!/usr/bin/env bash
# Rolls a service of an environment back to an earlier revision of its task definition, as
# the infrastructure document says, then waits for it to be stable and runs the smoke tests.
# deploy.sh registers one revision per deployment; list them with
#	aws ecs list-task-definitions --family-prefix muejam-ENVIRONMENT-SERVICE --sort DESC
#
#	scripts/deployment/rollback.sh ENVIRONMENT REVISION [--service appserver|edge] [--dry-run]
#
# The service defaults to appserver (the seed's "backend"). --dry-run prints every command
# instead of running it. Environment: AWS_REGION (default eu-west-1), BASE_URL (default the
# environment's Terraform output base_url).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/deployment/lib.sh
source "$ROOT/scripts/deployment/lib.sh"

usage() { die "usage: rollback.sh ENVIRONMENT REVISION [--service appserver|edge] [--dry-run]"; }

ENVIRONMENT="" REVISION="" SERVICE=appserver
while (($#)); do
	case $1 in
	--dry-run) DRY_RUN=1 ;;
	--service)
		(($# > 1)) || usage
		SERVICE=$2
		shift
		;;
	-*) usage ;;
	*)
		if [[ -z $ENVIRONMENT ]]; then ENVIRONMENT=$1
		elif [[ -z $REVISION ]]; then REVISION=$1
		else usage
		fi
		;;
	esac
	shift
done
[[ -n $ENVIRONMENT && -n $REVISION ]] || usage
check_environment "$ENVIRONMENT"
[[ $REVISION =~ ^[1-9][0-9]*$ ]] || die "revision '$REVISION' is not a task definition revision number"
case $SERVICE in
appserver | edge) ;;
*) die "unknown service '$SERVICE': want appserver or edge" ;;
esac

AWS_REGION=${AWS_REGION:-eu-west-1}
CLUSTER=muejam-$ENVIRONMENT
TASK_DEFINITION=muejam-$ENVIRONMENT-$SERVICE:$REVISION

say "roll $SERVICE of $ENVIRONMENT back to $TASK_DEFINITION"
# Fails, before anything changes, when the revision does not exist or was deregistered.
run aws ecs describe-task-definition --region "$AWS_REGION" --task-definition "$TASK_DEFINITION" \
	--query 'taskDefinition.[taskDefinitionArn,status]' --output text
run aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
	--task-definition "$TASK_DEFINITION"
wait_stable "$CLUSTER" "$SERVICE"

say "smoke tests"
smoke_test "$ENVIRONMENT"
say "rolled $SERVICE of $ENVIRONMENT back to $TASK_DEFINITION"
