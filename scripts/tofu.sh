#!/usr/bin/env bash
# scripts/tofu.sh: print the path of a Terraform-compatible CLI for `fmt` (the Terraform tests'
# TestFormat): terraform or tofu from PATH when there is one, else OpenTofu built from its Go
# module, pinned below, into .run/tools/bin/tofu (once; a few minutes on 2 cores).
#
# OpenTofu's module carries replace directives, so `go install module@version` refuses it; the
# module is downloaded from the Go module proxy and built in place, as its own main module.
# Nothing is installed system-wide. Used by make test and the GitHub workflows:
#
#	$(scripts/tofu.sh) fmt -recursive infra/terraform
set -euo pipefail

version=v1.10.7

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.run/tools/bin/tofu"

for name in terraform tofu; do
	if p="$(command -v "$name" 2>/dev/null)"; then
		echo "$p"
		exit 0
	fi
done
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "OpenTofu ${version}"; then
	echo "$bin"
	exit 0
fi

echo "$0: building OpenTofu ${version} from its Go module into .run/tools/bin (once)" >&2
dir="$(go mod download -json "github.com/opentofu/opentofu@${version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ] || [ ! -d "$dir/cmd/tofu" ]; then
	echo "$0: could not download github.com/opentofu/opentofu@${version}" >&2
	exit 1
fi
mkdir -p "$(dirname "$bin")"
(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-X github.com/opentofu/opentofu/version.dev=no" -o "$bin.tmp" ./cmd/tofu) >&2
mv "$bin.tmp" "$bin"
echo "$bin"
