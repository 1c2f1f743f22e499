#!/usr/bin/env bash
# Deploys the current checkout to an environment, as the infrastructure document says: build
# the images of the edge, the app server and the database migration, push them to the
# environment's ECR, run the migration as a one-off ECS task (a new revision of
# muejam-ENVIRONMENT-migrate with the new image, in the app server's subnets and security
# groups) and stop unless it exits 0, then register a task definition revision of each service
# with the new image and update the service (the app server first; it no longer migrates on
# start, MIGRATE_ON_START=false), wait for both to be stable, then run the smoke tests. ECS
# rolls a failed deployment back by itself (deployment circuit breaker);
# scripts/deployment/rollback.sh goes back to any earlier revision (it does not undo
# migrations).
#
#	scripts/deployment/deploy.sh ENVIRONMENT [--dry-run]
#
# ENVIRONMENT is dev, staging or production. --dry-run prints every command instead of running
# it. Environment: VERSION (image tag; default the commit, git rev-parse --short=12 HEAD),
# AWS_REGION (default eu-west-1), REGISTRY (default the account's ECR registry in AWS_REGION),
# BASE_URL (default the environment's Terraform output base_url).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/deployment/lib.sh
source "$ROOT/scripts/deployment/lib.sh"

usage() { die "usage: deploy.sh ENVIRONMENT [--dry-run]"; }

ENVIRONMENT=""
for arg in "$@"; do
	case $arg in
	--dry-run) DRY_RUN=1 ;;
	-*) usage ;;
	*) [[ -z $ENVIRONMENT ]] || usage; ENVIRONMENT=$arg ;;
	esac
done
[[ -n $ENVIRONMENT ]] || usage
check_environment "$ENVIRONMENT"

AWS_REGION=${AWS_REGION:-eu-west-1}
VERSION=${VERSION:-$(git -C "$ROOT" rev-parse --short=12 HEAD)}
CLUSTER=muejam-$ENVIRONMENT
# The services in deployment order; each is also the name of its container and of its
# repository muejam/SERVICE, as infra/terraform/modules/ecs-service makes them.
SERVICES=(appserver edge)
# The one-off migration task (infra/terraform/modules/ecs-task, module "migrate" of the root):
# its container, its repository muejam/migrate and its image docker/migrate.Dockerfile are
# named migrate, its task definition family muejam-ENVIRONMENT-migrate.
MIGRATE=migrate
# The images to build and push: the services' and the migration's.
IMAGES=("${SERVICES[@]}" "$MIGRATE")
# The jq program that turns a task definition into the input of register-task-definition:
# what Terraform set (roles, sizes, environment, logs) is kept, only the image changes.
# shellcheck disable=SC2016 # $name and $image are jq variables
NEW_REVISION='.containerDefinitions |= map(if .name == $name then .image = $image else . end) | {family, taskRoleArn, executionRoleArn, networkMode, containerDefinitions, volumes, placementConstraints, requiresCompatibilities, cpu, memory, runtimePlatform} | with_entries(select(.value != null))'

if [[ -z ${REGISTRY:-} ]]; then
	account=$(capture ACCOUNT_ID aws sts get-caller-identity --query Account --output text)
	REGISTRY=$account.dkr.ecr.$AWS_REGION.amazonaws.com
fi

say "deploying $VERSION to $ENVIRONMENT ($CLUSTER, $AWS_REGION)"

say "log in to $REGISTRY"
if ((DRY_RUN)); then
	printf '+ %s | %s\n' "$(words aws ecr get-login-password --region "$AWS_REGION")" \
		"$(words docker login --username AWS --password-stdin "$REGISTRY")" >&3
else
	aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$REGISTRY"
fi

for img in "${IMAGES[@]}"; do
	say "build $img"
	run docker build --file "$ROOT/docker/$img.Dockerfile" --tag "$REGISTRY/muejam/$img:$VERSION" "$ROOT"
done
for img in "${IMAGES[@]}"; do
	say "push $img"
	run docker push "$REGISTRY/muejam/$img:$VERSION"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The migration, before any service is updated: the new app server must start on a migrated
# schema. Under --dry-run capture outputs placeholders (the exit code's is 0, so that every
# command is printed).
family=muejam-$ENVIRONMENT-$MIGRATE
say "register a revision of $family with muejam/$MIGRATE:$VERSION"
run_to "$work/$MIGRATE.json" aws ecs describe-task-definition --region "$AWS_REGION" \
	--task-definition "$family" --query taskDefinition --output json
run_to "$work/$MIGRATE-new.json" jq --arg name "$MIGRATE" --arg image "$REGISTRY/muejam/$MIGRATE:$VERSION" \
	"$NEW_REVISION" "$work/$MIGRATE.json"
migrate_arn=$(capture MIGRATE_TASK_DEFINITION_ARN aws ecs register-task-definition --region "$AWS_REGION" \
	--cli-input-json "file://$work/$MIGRATE-new.json" --query taskDefinition.taskDefinitionArn --output text)

# The task runs where the app server runs (Terraform's output migrate_task names the same
# subnets and security group): the network configuration of the appserver service.
say "network configuration of the appserver service"
# (A list comes out of --output text separated by tabs; run-task wants commas.)
awsvpc='services[0].networkConfiguration.awsvpcConfiguration'
subnets=$(capture SUBNETS aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" \
	--services appserver --query "$awsvpc.subnets" --output text)
security_groups=$(capture SECURITY_GROUPS aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" \
	--services appserver --query "$awsvpc.securityGroups" --output text)
subnets=${subnets//$'\t'/,} security_groups=${security_groups//$'\t'/,}
[[ -n $subnets && $subnets != None && -n $security_groups && $security_groups != None ]] ||
	die "no subnets or security groups in the network configuration of $CLUSTER/appserver"

say "run the migration ($family)"
task=$(capture MIGRATE_TASK_ARN aws ecs run-task --region "$AWS_REGION" --cluster "$CLUSTER" \
	--launch-type FARGATE --task-definition "$migrate_arn" --started-by muejam-deploy \
	--network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$security_groups],assignPublicIp=DISABLED}" \
	--query 'tasks[0].taskArn' --output text)
[[ -n $task && $task != None ]] || die "the migration task did not start (aws ecs run-task returned no task)"
run aws ecs wait tasks-stopped --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$task"
exit_code=$(capture 0 aws ecs describe-tasks --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$task" \
	--query 'tasks[0].containers[0].exitCode' --output text)
if [[ $exit_code != 0 ]]; then
	run aws ecs describe-tasks --region "$AWS_REGION" --cluster "$CLUSTER" --tasks "$task" \
		--query 'tasks[0].[stoppedReason, containers[0].reason]' --output text >&2 || true
	die "the migration task $task exited with '$exit_code', not 0 (logs: /ecs/muejam/$ENVIRONMENT/$MIGRATE): no service updated"
fi
say "migrated"

for svc in "${SERVICES[@]}"; do
	family=muejam-$ENVIRONMENT-$svc
	say "register a revision of $family with muejam/$svc:$VERSION"
	run_to "$work/$svc.json" aws ecs describe-task-definition --region "$AWS_REGION" \
		--task-definition "$family" --query taskDefinition --output json
	run_to "$work/$svc-new.json" jq --arg name "$svc" --arg image "$REGISTRY/muejam/$svc:$VERSION" \
		"$NEW_REVISION" "$work/$svc.json"
	arn=$(capture "${svc^^}_TASK_DEFINITION_ARN" aws ecs register-task-definition --region "$AWS_REGION" \
		--cli-input-json "file://$work/$svc-new.json" --query taskDefinition.taskDefinitionArn --output text)

	say "update service $svc"
	run aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$svc" --task-definition "$arn"
	wait_stable "$CLUSTER" "$svc"
done

say "smoke tests"
smoke_test "$ENVIRONMENT"
say "deployed $VERSION to $ENVIRONMENT"
