#!/usr/bin/env bash
# certbot deploy hook: after certbot issues or renews the mail host's certificate, copy it to where
# the mail server (an unprivileged user) can read it, make the SMTP listeners load it without a
# restart, and reload nginx.
#
# Why a copy: certbot keeps private keys under /etc/letsencrypt/{live,archive}, readable by root only.
# The server's TLS_CERT_FILE/TLS_KEY_FILE point at the copies (MAILSERVER_TLS_DIR/fullchain.pem and
# privkey.pem). Each file is written beside its target and renamed over it, so the server never
# reads a half-written file. The server also polls these files (TLS_WATCH_INTERVAL), so a reload
# command that fails is not fatal: the new certificate is picked up within that interval.
#
# certbot runs it as root with RENEWED_LINEAGE=/etc/letsencrypt/live/<name>. Settings come from the
# environment or from /etc/mailserver/certbot-hook.env (MAILSERVER_HOOK_ENV to use another file):
#   MAILSERVER_TLS_DIR      where the copies go                       (/etc/mailserver/tls)
#   MAILSERVER_USER         owner of the copies; the reload runs as it (mailserver)
#   MAILSERVER_RELOAD_CMD   run after copying to reload the listeners  (pm2 sendSignal SIGHUP mailserver)
#                           empty = rely on the file polling
#   RELOAD_NGINX            yes|no: `nginx -t` then reload nginx       (yes)
# Usage: certbot ... --deploy-hook /opt/mailserver/scripts/certbot-deploy-hook.sh
#        certbot-deploy-hook.sh --lineage /etc/letsencrypt/live/mail.example.com   (by hand)
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

lineage="${RENEWED_LINEAGE:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --lineage) [ $# -ge 2 ] || { echo "certbot-deploy-hook: --lineage needs a directory" >&2; exit 2; }; lineage="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "certbot-deploy-hook: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

env_file="${MAILSERVER_HOOK_ENV:-/etc/mailserver/certbot-hook.env}"
if [ -f "$env_file" ]; then
  # shellcheck disable=SC1090
  . "$env_file"
fi
tls_dir="${MAILSERVER_TLS_DIR:-/etc/mailserver/tls}"
user="${MAILSERVER_USER:-mailserver}"
reload_cmd="${MAILSERVER_RELOAD_CMD-pm2 sendSignal SIGHUP mailserver}"
reload_nginx="${RELOAD_NGINX:-yes}"

if [ -z "$lineage" ]; then
  echo "certbot-deploy-hook: RENEWED_LINEAGE is not set (certbot sets it; by hand use --lineage DIR)" >&2
  exit 2
fi
for f in fullchain.pem privkey.pem; do
  if [ ! -r "$lineage/$f" ]; then
    echo "certbot-deploy-hook: cannot read $lineage/$f" >&2
    exit 2
  fi
done
if ! id -u "$user" >/dev/null 2>&1; then
  echo "certbot-deploy-hook: user '$user' does not exist (set MAILSERVER_USER)" >&2
  exit 2
fi
group="$(id -gn "$user")"

mkdir -p "$tls_dir"
chmod 0750 "$tls_dir"
chown "$user:$group" "$tls_dir"

# install beside the target, then rename: readers see the old file or the new one, never a mix
put() {
  local src="$1" dest="$2" mode="$3" tmp
  tmp="$(mktemp "$tls_dir/.$(basename "$dest").XXXXXX")"
  cat "$src" >"$tmp"
  chmod "$mode" "$tmp"
  chown "$user:$group" "$tmp"
  mv -f "$tmp" "$dest"
}
# the key first: the server checks that the pair matches, and keeps the old one until both are new
put "$lineage/privkey.pem" "$tls_dir/privkey.pem" 0600
put "$lineage/fullchain.pem" "$tls_dir/fullchain.pem" 0644
echo "certbot-deploy-hook: installed $lineage into $tls_dir (owner $user)"

if [ -n "$reload_cmd" ]; then
  if [ "$(id -un)" != "$user" ] && [ "$(id -u)" -eq 0 ]; then
    # with the user's HOME: pm2 finds its daemon through ~/.pm2
    run=(runuser -u "$user" -- env HOME="$(getent passwd "$user" | cut -d: -f6)" sh -c "$reload_cmd")
  else
    run=(sh -c "$reload_cmd")
  fi
  if "${run[@]}"; then
    echo "certbot-deploy-hook: reloaded the mail server ($reload_cmd)"
  else
    echo "certbot-deploy-hook: '$reload_cmd' failed; the server picks the certificate up within TLS_WATCH_INTERVAL" >&2
  fi
fi

if [ "$reload_nginx" = "yes" ] && command -v nginx >/dev/null 2>&1; then
  if nginx -t -q; then
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx; then
      systemctl reload nginx
    else
      nginx -s reload
    fi
    echo "certbot-deploy-hook: reloaded nginx"
  else
    echo "certbot-deploy-hook: nginx -t failed; nginx not reloaded" >&2
    exit 1
  fi
fi
