#!/usr/bin/env bash
# scripts/promtool.sh [promtool|amtool|prometheus|alertmanager]: print the path of the tool (default
# promtool), installing it under .run/tools/ first when it is neither on PATH nor there.
#
# The tools come from Debian's packages (`prometheus` for promtool and prometheus,
# `prometheus-alertmanager` for amtool and alertmanager), fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`: the binaries are static Go programs, so nothing is installed system-wide, no
# package script runs and no service starts (installing the packages with `apt-get install`
# would start a Prometheus on :9090 and an Alertmanager on :9093). Used by
# infra/monitoring/monitoring_test.go (`make test`) and by hand:
#
#	$(scripts/promtool.sh) test rules infra/monitoring/tests/*.yml
set -euo pipefail

tool="${1:-promtool}"
case "$tool" in
promtool | prometheus) pkg=prometheus ;;
amtool | alertmanager) pkg=prometheus-alertmanager ;;
*)
	echo "usage: $0 [promtool|amtool|prometheus|alertmanager]" >&2
	exit 2
	;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.run/tools"

if p="$(command -v "$tool" 2>/dev/null)"; then
	echo "$p"
	exit 0
fi
if [ -x "$tools/bin/$tool" ]; then
	echo "$tools/bin/$tool"
	exit 0
fi

for cmd in apt-get apt-cache dpkg-deb; do
	if ! command -v "$cmd" >/dev/null; then
		echo "$0: $tool is missing and $cmd is not available: install Debian's $pkg package or put $tool on PATH" >&2
		exit 1
	fi
done

sudo=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then
	sudo=(sudo)
fi
policy="$(apt-cache policy "$pkg" 2>/dev/null || true)"
if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
	echo "$0: $pkg not in the package lists, running apt-get update" >&2
	"${sudo[@]}" apt-get update -qq >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work" # apt's _apt sandbox user writes the download here
echo "$0: fetching Debian's $pkg package for $tool into $tools (no service is installed or started)" >&2
(cd "$work" && apt-get download -qq "$pkg" >&2)
deb="$(ls "$work"/*.deb)"
dpkg-deb -x "$deb" "$work/x"
mkdir -p "$tools/bin"
for b in promtool prometheus amtool alertmanager; do
	src="$work/x/usr/bin/$b"
	[ -x "$src" ] || src="$work/x/usr/bin/prometheus-$b" # Debian's name for alertmanager
	if [ -x "$src" ]; then
		install -m 0755 "$src" "$tools/bin/$b"
	fi
done
if [ ! -x "$tools/bin/$tool" ]; then
	echo "$0: $deb holds no usr/bin/$tool" >&2
	exit 1
fi
echo "$0: $("$tools/bin/$tool" --version 2>&1 | head -1)" >&2
echo "$tools/bin/$tool"
