#!/bin/sh
# Entry of the Flywheel image: `flywheel <service> [args]` runs dist/apps/<service>/src/main.js;
# `flywheel healthcheck <port> [path]` exits 0 when http://127.0.0.1:<port><path> answers 2xx (default
# /readyz), for container health checks in an image without curl. Nothing else.
set -eu
service="${1:-}"
case "$service" in
  gateway|policy|reward|moderation|trainer)
    shift
    # Replicas of one service must not share an instance id: the default <service>-<pid> is <service>-1
    # in every container, so name it after the container's hostname (pod name in Kubernetes).
    export FLYWHEEL_INSTANCE_ID="${FLYWHEEL_INSTANCE_ID:-$service-$(hostname)}"
    exec node "dist/apps/$service/src/main.js" "$@"
    ;;
  healthcheck)
    port="${2:?usage: flywheel healthcheck <port> [path]}"
    path="${3:-/readyz}"
    exec node -e "fetch('http://127.0.0.1:$port$path',{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
    ;;
  *)
    echo "usage: flywheel <gateway|policy|reward|moderation|trainer> | flywheel healthcheck <port> [path]" >&2
    exit 64
    ;;
esac
