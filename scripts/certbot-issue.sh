#!/usr/bin/env bash
# Issues the mail host's certificate with certbot (HTTP-01 through nginx's ACME webroot, see
# nginx/mailserver.conf) and installs it for the mail server with scripts/certbot-deploy-hook.sh.
# certbot stores the hook in the renewal configuration, so Debian's certbot timer renews the
# certificate and reloads the SMTP listeners and nginx with no further setup.
#
# Usage: sudo scripts/certbot-issue.sh --domain mail.example.com --email admin@example.com
#          [--webroot /var/www/letsencrypt] [--staging] [--dry-run]
#   --staging   use Let's Encrypt's staging CA (untrusted certificates, generous rate limits)
#   --dry-run   print the commands instead of running them
# Renewal test: sudo certbot renew --dry-run
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

domain="" email="" webroot="/var/www/letsencrypt" staging=no dry=no
need_value() { [ $# -ge 2 ] && [ -n "$2" ] && [[ "$2" != --* ]] || { echo "certbot-issue: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) need_value "$@"; domain="$2"; shift 2 ;;
    --email) need_value "$@"; email="$2"; shift 2 ;;
    --webroot) need_value "$@"; webroot="$2"; shift 2 ;;
    --staging) staging=yes; shift ;;
    --dry-run) dry=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "certbot-issue: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$domain" ] || { echo "certbot-issue: --domain is required (the mail host name, e.g. mail.example.com)" >&2; exit 2; }
[ -n "$email" ] || { echo "certbot-issue: --email is required (Let's Encrypt sends expiry warnings there)" >&2; exit 2; }
if ! [[ "$domain" =~ ^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$ ]]; then
  echo "certbot-issue: --domain '$domain' is not a fully qualified host name" >&2
  exit 2
fi
if ! [[ "$email" =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]]; then
  echo "certbot-issue: --email '$email' is not an email address" >&2
  exit 2
fi

hook="$(cd "$(dirname "$0")" && pwd)/certbot-deploy-hook.sh"
cmd=(certbot certonly --non-interactive --agree-tos --email "$email" --webroot -w "$webroot" -d "$domain" --deploy-hook "$hook")
[ "$staging" = yes ] && cmd+=(--staging)

if [ "$dry" = yes ]; then
  echo "mkdir -p $webroot"
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
command -v certbot >/dev/null 2>&1 || { echo "certbot-issue: certbot is not installed (apt-get install certbot)" >&2; exit 1; }
mkdir -p "$webroot"
# certbot runs the deploy hook itself when it obtains a certificate
"${cmd[@]}"
