#!/usr/bin/env bash
# Redirects the standard mail ports to the unprivileged ports the server listens on, so it never
# needs root: 25 → SMTP_PORT, 587 → SUBMISSION_PORT, 465 → SMTPS_PORT (iptables nat REDIRECT).
#
# The rules live in a chain of their own (MAILSERVER in the nat table), jumped to from PREROUTING
# (connections from other hosts) and from OUTPUT for the loopback interface (so `swaks --server
# localhost:25` on the VM itself works too). `add` rebuilds that chain, so running it again, or
# after changing a port, leaves exactly one rule per port; `remove` deletes the chain and its jumps
# and nothing else. IPv6 gets the same rules through ip6tables when it is present.
#
# Usage: sudo scripts/ports.sh add|remove|status [--env FILE] [--no-ipv6] [--dry-run]
#   --env FILE   read SMTP_PORT, SUBMISSION_PORT, SMTPS_PORT from FILE (default: .env beside the
#                repository's package.json when present; the environment wins over the file;
#                unset = 2525, 2587, 2465, the server's defaults)
#   --no-ipv6    leave ip6tables alone
#   --dry-run    print the iptables commands instead of running them (no root needed)
# The rules do not survive a reboot by themselves: install iptables-persistent and run
# `netfilter-persistent save` after `add` (docs/operations.md).
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

CHAIN=MAILSERVER
action="" env_file="" ipv6=yes dry=no
while [ $# -gt 0 ]; do
  case "$1" in
    add|remove|status) [ -z "$action" ] || { echo "ports.sh: one action only (got '$action' and '$1')" >&2; exit 2; }; action="$1"; shift ;;
    --env) [ $# -ge 2 ] || { echo "ports.sh: --env needs a file" >&2; exit 2; }; env_file="$2"; shift 2 ;;
    --no-ipv6) ipv6=no; shift ;;
    --dry-run) dry=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ports.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$action" ] || { echo "ports.sh: say add, remove or status (see --help)" >&2; exit 2; }

# the ports: environment, then the env file, then the server's defaults
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$env_file" ] && [ -f "$root/.env" ]; then env_file="$root/.env"; fi
from_file() {
  [ -n "$env_file" ] || return 0
  [ -r "$env_file" ] || { echo "ports.sh: cannot read $env_file" >&2; exit 2; }
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\{0,1\}\([0-9]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$env_file" | tail -n 1
}
smtp="${SMTP_PORT:-$(from_file SMTP_PORT)}"
submission="${SUBMISSION_PORT:-$(from_file SUBMISSION_PORT)}"
smtps="${SMTPS_PORT:-$(from_file SMTPS_PORT)}"
smtp="${smtp:-2525}" submission="${submission:-2587}" smtps="${smtps:-2465}"
for pair in "SMTP_PORT=$smtp" "SUBMISSION_PORT=$submission" "SMTPS_PORT=$smtps"; do
  value="${pair#*=}"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    echo "ports.sh: ${pair%%=*} must be a port number from 1 to 65535, got '$value'" >&2
    exit 2
  fi
done

tools=(iptables)
[ "$ipv6" = yes ] && command -v ip6tables >/dev/null 2>&1 && tools+=(ip6tables)
if [ "$dry" = no ]; then
  [ "$(id -u)" -eq 0 ] || { echo "ports.sh: iptables needs root: run it with sudo (or --dry-run to see the commands)" >&2; exit 1; }
  command -v iptables >/dev/null 2>&1 || { echo "ports.sh: iptables is not installed (apt-get install iptables)" >&2; exit 1; }
fi

run() {
  if [ "$dry" = yes ]; then echo "$*"; else "$@"; fi
}
# true when the rule or chain exists; in a dry run nothing is known, so assume a clean table
exists() {
  [ "$dry" = no ] && "$@" >/dev/null 2>&1
}

add() {
  local t="$1" pair from to
  exists "$t" -t nat -S "$CHAIN" || run "$t" -t nat -N "$CHAIN"
  run "$t" -t nat -F "$CHAIN"
  for pair in "25:$smtp" "587:$submission" "465:$smtps"; do
    from="${pair%%:*}" to="${pair#*:}"
    # a listener already on the standard port needs no redirect
    [ "$from" = "$to" ] && continue
    run "$t" -t nat -A "$CHAIN" -p tcp --dport "$from" -m comment --comment mailserver -j REDIRECT --to-ports "$to"
  done
  exists "$t" -t nat -C PREROUTING -p tcp -j "$CHAIN" || run "$t" -t nat -A PREROUTING -p tcp -j "$CHAIN"
  exists "$t" -t nat -C OUTPUT -o lo -p tcp -j "$CHAIN" || run "$t" -t nat -A OUTPUT -o lo -p tcp -j "$CHAIN"
}

remove() {
  local t="$1"
  if [ "$dry" = yes ]; then
    run "$t" -t nat -D PREROUTING -p tcp -j "$CHAIN"
    run "$t" -t nat -D OUTPUT -o lo -p tcp -j "$CHAIN"
  else
    while "$t" -t nat -C PREROUTING -p tcp -j "$CHAIN" >/dev/null 2>&1; do "$t" -t nat -D PREROUTING -p tcp -j "$CHAIN"; done
    while "$t" -t nat -C OUTPUT -o lo -p tcp -j "$CHAIN" >/dev/null 2>&1; do "$t" -t nat -D OUTPUT -o lo -p tcp -j "$CHAIN"; done
  fi
  if [ "$dry" = yes ] || exists "$t" -t nat -S "$CHAIN"; then
    run "$t" -t nat -F "$CHAIN"
    run "$t" -t nat -X "$CHAIN"
  fi
}

status() {
  local t="$1"
  if "$t" -t nat -S "$CHAIN" >/dev/null 2>&1; then
    echo "$t: redirects in place:"
    "$t" -t nat -S "$CHAIN" | grep -- '-A' || echo "  (none)"
  else
    echo "$t: no redirects"
  fi
}

for t in "${tools[@]}"; do
  case "$action" in
    add) add "$t"; [ "$dry" = yes ] || echo "ports.sh: $t: 25→$smtp 587→$submission 465→$smtps" ;;
    remove) remove "$t"; [ "$dry" = yes ] || echo "ports.sh: $t: redirects removed" ;;
    status) [ "$dry" = yes ] && { echo "$t -t nat -S $CHAIN"; continue; }; status "$t" ;;
  esac
done
