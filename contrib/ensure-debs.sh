#!/bin/sh
# ensure-debs.sh - install the Debian packages that are missing, and only
# those: apt-get, through sudo when not root.  Used by make deps.
#   ensure-debs.sh PACKAGE...          a package counts as present when dpkg has it
#   ensure-debs.sh --cmd CMD:PACKAGE... present when the command CMD exists
by_cmd=
[ "$1" = --cmd ] && { by_cmd=1; shift; }
missing=
for item in "$@"; do
	if [ -n "$by_cmd" ]; then
		command -v "${item%%:*}" >/dev/null 2>&1 || missing="$missing ${item#*:}"
	else
		dpkg-query -W -f='${Status}' "$item" 2>/dev/null | grep -q 'ok installed' ||
			missing="$missing $item"
	fi
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq &&
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
