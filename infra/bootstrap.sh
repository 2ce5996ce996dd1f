#!/usr/bin/env bash
# Idempotent set-up shared by `make run` and `make test`; a fast no-op once done.
# Installs: .venv with the package and its dev extras (and gcloud-tasks-emulator), checkov into .venv-checkov,
# firebase-tools (Auth emulator) into
# infra/local/node_modules, a system user for the throwaway PostgreSQL when run as root, and
# (as root, only if missing) Debian's Java, Node.js, PostgreSQL, PgBouncer and chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/.venv"
log() { echo "bootstrap: $*" >&2; }
sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- system packages (normally already on the machine) ---------------------------------
missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the dashboard's browser tests (tests/browser)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
# PgBouncer in transaction mode, in front of the test PostgreSQL (tests/integration/database).
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing system packages: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})"
    exit 1
  fi
fi
sdk_root=/usr/lib/google-cloud-sdk
if [ ! -d "$sdk_root/platform" ] && command -v gcloud >/dev/null 2>&1; then
  sdk_root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
fi
if [ ! -x "$sdk_root/platform/cloud-firestore-emulator/cloud_firestore_emulator" ]; then
  log "the Cloud Firestore emulator is missing under $sdk_root; install the Google Cloud CLI component" \
      "(gcloud components install cloud-firestore-emulator, or apt google-cloud-cli-firestore-emulator)"
  exit 1
fi
if [ ! -x "$sdk_root/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]; then
  log "the Cloud Pub/Sub emulator is missing under $sdk_root; install the Google Cloud CLI component" \
      "(gcloud components install pubsub-emulator, or apt google-cloud-cli-pubsub-emulator)"
  exit 1
fi

# --- unprivileged user for PostgreSQL (initdb refuses root) ---------------------------
if [ "$(id -u)" = 0 ] && ! id firebackup >/dev/null 2>&1; then
  log "useradd firebackup (runs the test PostgreSQL)"
  useradd --system --no-create-home --shell /usr/sbin/nologin firebackup
fi

# --- Node: firebase-tools for the Auth emulator (in the background, beside pip) ------------
npm_pid=""
npm_log=$(mktemp -t firebackup-npm-ci.XXXXXX)
checkov_pid=""
trap 'for pid in $npm_pid $checkov_pid; do kill "$pid" 2>/dev/null; done; true' EXIT
want_npm=$(sha infra/local/package.json infra/local/package-lock.json)
npm_stamp="infra/local/node_modules/.firebackup-bootstrap"
if [ ! -x infra/local/node_modules/.bin/firebase ] || [ "$(cat "$npm_stamp" 2>/dev/null || true)" != "$want_npm" ]; then
  log "npm ci (infra/local: firebase-tools, axe-core)"
  npm ci --prefix infra/local --prefer-offline --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1 &
  npm_pid=$!
fi

# --- checkov (terraform/'s static checks) in a venv of its own, in the background: its pins conflict
# with ours. Pinned exactly: checks change between releases (CKV_GCP_79 names the latest PostgreSQL).
CHECKOV_SPEC='checkov==3.3.30'
checkov_venv="$ROOT/.venv-checkov"
if [ "$(cat "$checkov_venv/.firebackup-bootstrap" 2>/dev/null || true)" != "$CHECKOV_SPEC" ]; then
  log "pip install $CHECKOV_SPEC into .venv-checkov"
  mkdir -p "$checkov_venv"
  { "${PYTHON:-python3}" -m venv "$checkov_venv" &&
    "$checkov_venv/bin/python" -m pip install --disable-pip-version-check "$CHECKOV_SPEC"; } \
    >"$checkov_venv/pip-install.log" 2>&1 &
  checkov_pid=$!
fi

# --- Python ---------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating .venv"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
want=$(sha pyproject.toml)
stamp="$VENV/.firebackup-bootstrap"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  log "pip install -e '.[dev]'"
  pip_log="$VENV/pip-install.log"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[dev]' >"$pip_log" 2>&1; then
    grep -v "^WARNING: Location" "$pip_log" | tail -20 >&2
    log "pip install failed (full log: $pip_log)"
    exit 1
  fi
  echo "$want" >"$stamp"
fi
# The Cloud Tasks emulator pins protobuf<5, which it does not need (it uses google-cloud-tasks'
# types): installed without its dependencies, beside our protobuf 6+ (infra/local/tasks_emulator.py).
if ! "$VENV/bin/python" -c "import gcloud_tasks_emulator" >/dev/null 2>&1; then
  log "pip install --no-deps gcloud-tasks-emulator"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps 'gcloud-tasks-emulator>=0.6.2,<0.7' \
    >>"$VENV/pip-install.log" 2>&1 || { log "pip install gcloud-tasks-emulator failed (log: $VENV/pip-install.log)"; exit 1; }
fi

# await_install PID LOG WHAT STAMP VALUE: wait for a background install; on success write its stamp, else show its log.
await_install() {
  if ! wait "$1"; then
    tail -20 "$2" >&2
    log "$3 failed (log: $2)"
    exit 1
  fi
  echo "$5" >"$4"
}
if [ -n "$npm_pid" ]; then
  await_install "$npm_pid" "$npm_log" "npm ci in infra/local" "$npm_stamp" "$want_npm"
  npm_pid=""
fi
rm -f "$npm_log"
if [ -n "$checkov_pid" ]; then
  await_install "$checkov_pid" "$checkov_venv/pip-install.log" "pip install $CHECKOV_SPEC" \
        "$checkov_venv/.firebackup-bootstrap" "$CHECKOV_SPEC"
  checkov_pid=""
fi
