#!/bin/sh
# external-lgtm: writes the Authorization header value for each backend into $AUTH_DIR/<backend>
# (an in-memory emptyDir that Alloy's local.file components read), from the mounted
# otlp-gate-external-lgtm Secret ($SECRET_DIR) and the usernames in the environment:
#   <backend>-token present         -> "Bearer <token>"
#   otherwise EXTERNAL_<BACKEND>_USERNAME and <backend>-password -> "Basic base64(user:password)"
# Runs as Alloy's init container (the Alloy image has sh and coreutils) and in the tests.
# Prints which scheme each backend got, never a credential; exits 1 naming what is missing.
set -eu
umask 077
: "${SECRET_DIR:=/etc/otlp-gate/external-secret}"
: "${AUTH_DIR:=/run/otlp-gate/external-auth}"
status=0
for backend in loki mimir tempo; do
    upper=$(printf %s "$backend" | tr a-z A-Z)
    user=$(printenv "EXTERNAL_${upper}_USERNAME" || true)
    if [ -s "$SECRET_DIR/$backend-token" ]; then
        printf 'Bearer %s' "$(cat "$SECRET_DIR/$backend-token")" >"$AUTH_DIR/$backend"
        echo "auth-header: $backend: bearer token"
    elif [ -n "$user" ] && [ -s "$SECRET_DIR/$backend-password" ]; then
        printf 'Basic %s' "$(printf '%s:%s' "$user" "$(cat "$SECRET_DIR/$backend-password")" | base64 | tr -d '\n')" \
            >"$AUTH_DIR/$backend"
        echo "auth-header: $backend: basic auth as user $user"
    else
        echo "auth-header: $backend: no credential: set EXTERNAL_${upper}_USERNAME (ConfigMap otlp-gate-external-lgtm) and key $backend-password, or key $backend-token, in Secret otlp-gate-external-lgtm" >&2
        status=1
    fi
done
exit "$status"
