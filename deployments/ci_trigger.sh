#!/usr/bin/env bash
# Example CI job step: import a file through the import-csv deployment and fail the job when
# the flow run fails. Needs PREFECT_API_URL (and PREFECT_API_KEY on Prefect Cloud) and a worker
# on pool batchflows that can read SOURCE.
#
#   SOURCE=/data/incoming/users.csv TABLE=users KEY='["email"]' deployments/ci_trigger.sh
set -euo pipefail

: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect API, e.g. http://prefect:4200/api}"
: "${SOURCE:?set SOURCE to the CSV path as the worker sees it}"
: "${TABLE:?set TABLE to the target table}"
KEY=${KEY:-'["email"]'}
DEPLOYMENT=${DEPLOYMENT:-import-csv/import-csv}
PREFECT=${PREFECT:-prefect}

# --watch follows the flow run to its end: exit 0 when it completed, non-zero otherwise.
exec $PREFECT deployment run "$DEPLOYMENT" \
  --param source="$SOURCE" \
  --param table="$TABLE" \
  --param key="$KEY" \
  ${DATABASE:+--param database="$DATABASE"} \
  --flow-run-name "ci-${CI_JOB_ID:-$(date -u +%Y%m%dT%H%M%S)}" \
  --watch --watch-timeout "${WATCH_TIMEOUT:-3600}"
