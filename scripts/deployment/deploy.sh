#!/usr/bin/env bash
# Deploys the current checkout to an environment, as the infrastructure document says: build
# the images of the edge and the app server, push them to the environment's ECR, register a
# task definition revision of each service with the new image and update the service
# (the app server first: it migrates the database on start), wait for both to be stable,
# then run the smoke tests. ECS rolls a failed deployment back by itself (deployment circuit
# breaker); scripts/deployment/rollback.sh goes back to any earlier revision.
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

for svc in "${SERVICES[@]}"; do
	say "build $svc"
	run docker build --file "$ROOT/docker/$svc.Dockerfile" --tag "$REGISTRY/muejam/$svc:$VERSION" "$ROOT"
done
for svc in "${SERVICES[@]}"; do
	say "push $svc"
	run docker push "$REGISTRY/muejam/$svc:$VERSION"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
