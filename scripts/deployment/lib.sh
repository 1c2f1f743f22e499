# shellcheck shell=bash
# Helpers of deploy.sh and rollback.sh, sourced by them. Every command that touches Docker,
# AWS or the environment goes through run or capture, so that --dry-run prints it instead.

# DRY_RUN is 1 under --dry-run: commands are printed ("+ command") instead of run.
DRY_RUN=0

# Dry-run output goes to descriptor 3 so that capture can print a command from inside $(...).
exec 3>&1

# say prints a step to stderr.
say() { printf '==> %s\n' "$*" >&2; }

# die prints a message to stderr and exits with status 2.
die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 2; }

# words prints its arguments as a shell command line, a word with shell metacharacters in
# single quotes, so that a printed command can be pasted into a shell.
words() {
	local word q="'" out=""
	for word in "$@"; do
		if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
			out+=" $word"
		else
			out+=" '${word//$q/$q\\$q$q}'"
		fi
	done
	printf '%s' "${out# }"
}

# show prints a command for --dry-run.
show() { printf '+ %s\n' "$(words "$@")" >&3; }

# run runs a command, or prints it under --dry-run.
run() {
	if ((DRY_RUN)); then show "$@"; else "$@"; fi
}

# run_to FILE CMD... runs a command with its standard output into FILE, or prints it.
run_to() {
	local file=$1; shift
	if ((DRY_RUN)); then
		printf '+ %s > %s\n' "$(words "$@")" "$(words "$file")" >&3
	else
		"$@" >"$file"
	fi
}

# capture PLACEHOLDER CMD... prints the output of a command, or under --dry-run prints the
# command and outputs PLACEHOLDER, which stands for that output in the commands printed later.
capture() {
	local placeholder=$1; shift
	if ((DRY_RUN)); then show "$@"; printf '%s\n' "$placeholder"; else "$@"; fi
}

# check_environment fails unless $1 is one of the environments of infra/terraform/environments.
check_environment() {
	case $1 in
	dev | staging | production) ;;
	*) die "unknown environment '$1': want dev, staging or production" ;;
	esac
}

# wait_stable waits until the ECS service $2 of cluster $1 has settled on its new tasks.
wait_stable() {
	run aws ecs wait services-stable --region "$AWS_REGION" --cluster "$1" --services "$2"
}

# smoke_test runs smoke-tests.sh against the environment $1: BASE_URL, or the base_url
# output of its Terraform. Its metrics endpoints are internal to the VPC, so the metrics
# checks are off here (they run against the local stack); smoke-tests.sh still checks that
# /metrics is not served publicly.
smoke_test() {
	local base_url=${BASE_URL:-}
	if [[ -z $base_url ]]; then
		base_url=$(capture BASE_URL terraform -chdir="$ROOT/infra/terraform/environments/$1" output -raw base_url)
	fi
	run env EDGE_METRICS_URL= APP_METRICS_URL= "$ROOT/scripts/deployment/smoke-tests.sh" "$base_url"
}
