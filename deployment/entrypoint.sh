#!/bin/sh
# Container entrypoint of every Phoenix 95 service: apply the database migrations
# (python -m shared.db.migrate, configured by DATABASE_URL), then become the command
# (exec: the service is PID 1 and receives the stop signal itself).
#
# A few attempts, so that a database still starting up, or another service migrating at the
# same moment, does not fail the start; a migration that keeps failing stops the container.
set -eu

attempt=1
until python -m shared.db.migrate; do
    if [ "$attempt" -ge 5 ]; then
        echo "entrypoint: database migrations failed $attempt times, giving up" >&2
        exit 1
    fi
    echo "entrypoint: database migrations failed (attempt $attempt), retrying in 3 s" >&2
    attempt=$((attempt + 1))
    sleep 3
done

exec "$@"
