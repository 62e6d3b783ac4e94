# shellcheck shell=bash
# Throwaway database servers for tests and benchmarks: PostgreSQL 15 and MariaDB, each in a
# private directory, on a free port bound to 127.0.0.1 only. Sourced, not run:
#
#   source scripts/services.sh
#   services_start pg    "$DIR" [-c name=value ...]   # exports SLUICEGATE_TEST_PG_URL
#   services_start mysql "$DIR" [--option=value ...]  # exports SLUICEGATE_TEST_MYSQL_URL
#   services_stop "$DIR"                              # stops every server under $DIR
#   trap 'services_stop "$DIR"' EXIT                  # if the caller wants that
#
# Each server lives in "$DIR/pg" or "$DIR/mysql": data directory, socket, log (`server.log`)
# and an `env` file with the exports (`source "$DIR/pg/env"` from another shell). Starting
# again is safe: a running server is reused, a stopped one is restarted (on a new port if its
# old one is taken), a missing one is created. The servers are missing on a fresh machine;
# they are installed with `apt-get install` (Debian: postgresql-15, mariadb-server), which
# needs root (or sudo).
#
# Root: PostgreSQL refuses to run as root and MariaDB should not, so as root the data
# directories belong to the `postgres` / `mysql` system users and the servers run as them
# (`runuser`); "$DIR" is made traversable (o+x) for them. As any other user they run as that user.
#
# URLs and credentials (local throwaway servers, trust/known passwords by design):
#   SLUICEGATE_TEST_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres       (trust auth)
#   SLUICEGATE_TEST_MYSQL_URL=mysql://sluicegate:sluicegate@127.0.0.1:PORT/sluicegate_test
# plus SERVICES_PG_PORT, SERVICES_PG_SOCKET_DIR, SERVICES_MYSQL_PORT, SERVICES_MYSQL_SOCKET.

_services_log() { printf '[services] %s\n' "$*" >&2; }
_services_die() { printf '[services] error: %s\n' "$*" >&2; return 1; }

# Run a command as root: directly when we are root, else through sudo when it is available.
_services_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    _services_die "need root (or sudo) to run: $*"
  fi
}

_SERVICES_APT_UPDATED=""
# _services_apt_install PACKAGE...: apt-get update (at most once per shell), then install.
_services_apt_install() {
  command -v apt-get >/dev/null 2>&1 || { _services_die "apt-get not found; install $* by hand"; return 1; }
  if [ -z "$_SERVICES_APT_UPDATED" ]; then
    _services_log "apt-get update"
    _services_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    _SERVICES_APT_UPDATED=1
  fi
  _services_log "apt-get install -y $*"
  _services_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# The directory that holds initdb/pg_ctl/postgres (PostgreSQL 15 preferred).
_services_pg_bindir() {
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    echo /usr/lib/postgresql/15/bin
    return 0
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  return 1
}

# services_install pg|mysql: install the server and client packages when they are missing.
services_install() {
  case "${1:-}" in
    pg)
      if ! _services_pg_bindir >/dev/null || ! command -v psql >/dev/null 2>&1; then
        _services_apt_install postgresql-15 postgresql-client-15 || return 1
      fi
      _services_pg_bindir >/dev/null || { _services_die "PostgreSQL 15 is still missing after apt-get install"; return 1; }
      ;;
    mysql)
      if ! _services_mysql_bin mariadbd >/dev/null || ! _services_mysql_bin mariadb-install-db >/dev/null ||
         ! command -v mariadb >/dev/null 2>&1; then
        _services_apt_install mariadb-server mariadb-client || return 1
      fi
      _services_mysql_bin mariadbd >/dev/null || { _services_die "mariadbd is still missing after apt-get install"; return 1; }
      ;;
    *) _services_die "services_install: pg or mysql, not '${1:-}'"; return 1 ;;
  esac
  if [ "$(id -u)" -eq 0 ]; then
    command -v runuser >/dev/null 2>&1 || { _services_die "runuser (util-linux) is missing"; return 1; }
  fi
}

# _services_mysql_bin NAME: the path of a MariaDB program (also looks in /usr/sbin).
_services_mysql_bin() {
  local p
  p="$(command -v "$1" 2>/dev/null)" && { echo "$p"; return 0; }
  for p in "/usr/sbin/$1" "/usr/bin/$1"; do
    [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
_services_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nobody listens on (the server start retries on a new one if it loses a race).
_services_free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! _services_port_busy "$port"; then
      echo "$port"
      return 0
    fi
  done
  _services_die "no free port found"
}

# _services_owner pg|mysql: the system user the server runs as ("" = the current user).
_services_owner() {
  if [ "$(id -u)" -ne 0 ]; then
    echo ""
  elif [ "$1" = pg ]; then
    echo postgres
  else
    echo mysql
  fi
}

# _services_run USER CMD...: run CMD as USER (or as ourselves when USER is empty).
_services_run() {
  local user="$1"
  shift
  if [ -n "$user" ]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

# Make DIR (and the service directory under it) usable by the service user.
_services_prepare_dir() {
  local user="$1" sdir="$2"
  mkdir -p "$sdir" || return 1
  if [ -n "$user" ]; then
    id "$user" >/dev/null 2>&1 || { _services_die "system user '$user' does not exist (is the server package installed?)"; return 1; }
    chmod o+x "$(dirname "$sdir")" 2>/dev/null || true
    chown "$user:" "$sdir" || return 1
    chmod 700 "$sdir"
    if ! runuser -u "$user" -- test -w "$sdir"; then
      _services_die "user '$user' cannot reach $sdir: a parent directory is not traversable (chmod o+x it or pick another DIR)"
      return 1
    fi
  fi
}

# A directory for the Unix socket: the service directory unless its path is too long for a
# socket (about 107 bytes), else a short one under /tmp recorded in the service directory.
_services_socket_dir() {
  local user="$1" sdir="$2" d
  if [ "${#sdir}" -le 80 ]; then
    echo "$sdir"
    return 0
  fi
  if [ -f "$sdir/socket_dir" ] && [ -d "$(cat "$sdir/socket_dir")" ]; then
    cat "$sdir/socket_dir"
    return 0
  fi
  d="$(mktemp -d /tmp/sgsvc.XXXXXX)" || return 1
  [ -n "$user" ] && chown "$user:" "$d"
  echo "$d" >"$sdir/socket_dir"
  echo "$d"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

_services_pg_export() {
  local sdir="$1" port="$2" sock="$3"
  export SERVICES_PG_PORT="$port" SERVICES_PG_SOCKET_DIR="$sock"
  export SLUICEGATE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  {
    echo "export SERVICES_PG_PORT=$port"
    echo "export SERVICES_PG_SOCKET_DIR=$sock"
    echo "export SLUICEGATE_TEST_PG_URL=$SLUICEGATE_TEST_PG_URL"
  } >"$sdir/env"
}

_services_pg_start() {
  local dir="$1"
  shift
  services_install pg || return 1
  local bin user sdir data sock port
  bin="$(_services_pg_bindir)"
  user="$(_services_owner pg)"
  sdir="$dir/pg"
  data="$sdir/data"
  _services_prepare_dir "$user" "$sdir" || return 1
  sock="$(_services_socket_dir "$user" "$sdir")" || return 1

  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    _services_log "initdb $data"
    _services_run "$user" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$sdir/initdb.log" 2>&1 || { cat "$sdir/initdb.log" >&2; _services_die "initdb failed"; return 1; }
  fi

  if _services_run "$user" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port="$(cat "$sdir/port" 2>/dev/null)"
    if [ -n "$port" ] && _services_run "$user" "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
      _services_log "PostgreSQL already running in $data on port $port"
      _services_pg_export "$sdir" "$port" "$sock"
      return 0
    fi
    _services_run "$user" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1
  fi

  for _ in 1 2 3 4 5; do
    port="$(_services_free_port)" || return 1
    # Options from earlier starts are kept in postgresql.auto.conf only when set via ALTER SYSTEM;
    # the ones given here apply to this start.
    if _services_run "$user" "$bin/pg_ctl" -D "$data" -l "$sdir/server.log" -w -t 60 \
         -o "-p $port -k $sock -c listen_addresses=127.0.0.1 $*" start >/dev/null 2>&1; then
      echo "$port" >"$sdir/port"
      _services_log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data $data)"
      _services_pg_export "$sdir" "$port" "$sock"
      return 0
    fi
    if _services_port_busy "$port"; then
      _services_log "port $port was taken meanwhile; trying another"
      continue
    fi
    tail -n 20 "$sdir/server.log" >&2
    _services_die "PostgreSQL did not start (log: $sdir/server.log)"
    return 1
  done
  _services_die "PostgreSQL did not start after 5 ports"
}

_services_pg_stop() {
  local sdir="$1/pg" bin user
  [ -f "$sdir/data/PG_VERSION" ] || return 0
  bin="$(_services_pg_bindir)" || return 0
  user="$(_services_owner pg)"
  if _services_run "$user" "$bin/pg_ctl" -D "$sdir/data" status >/dev/null 2>&1; then
    _services_run "$user" "$bin/pg_ctl" -D "$sdir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
      _services_run "$user" "$bin/pg_ctl" -D "$sdir/data" -m immediate -w stop >/dev/null 2>&1 || true
    _services_log "PostgreSQL in $sdir stopped"
  fi
}

# ---------------------------------------------------------------------------------------------
# MariaDB

_services_mysql_export() {
  local sdir="$1" port="$2" sock="$3"
  export SERVICES_MYSQL_PORT="$port" SERVICES_MYSQL_SOCKET="$sock"
  export SLUICEGATE_TEST_MYSQL_URL="mysql://sluicegate:sluicegate@127.0.0.1:$port/sluicegate_test"
  {
    echo "export SERVICES_MYSQL_PORT=$port"
    echo "export SERVICES_MYSQL_SOCKET=$sock"
    echo "export SLUICEGATE_TEST_MYSQL_URL=$SLUICEGATE_TEST_MYSQL_URL"
  } >"$sdir/env"
}

# The pid of the MariaDB server of service directory SDIR, if it is running.
_services_mysql_pid() {
  local pid
  pid="$(cat "$1/mysqld.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Ask the server on SOCKET as the admin (socket-authenticated) account.
_services_mysql_admin() {
  local user="$1" sock="$2"
  shift 2
  _services_run "$user" "$(_services_mysql_bin mariadb)" --no-defaults --protocol=socket --socket="$sock" -u "${user:-$(id -un)}" "$@"
}

_services_mysql_start() {
  local dir="$1"
  shift
  services_install mysql || return 1
  local user sdir data sock sockdir port pid mariadbd
  mariadbd="$(_services_mysql_bin mariadbd)"
  user="$(_services_owner mysql)"
  sdir="$dir/mysql"
  data="$sdir/data"
  _services_prepare_dir "$user" "$sdir" || return 1
  sockdir="$(_services_socket_dir "$user" "$sdir")" || return 1
  sock="$sockdir/mysqld.sock"

  if [ ! -d "$data/mysql" ]; then
    rm -rf "$data"
    _services_log "mariadb-install-db $data"
    # The OS user that runs the server (mysql as root, else ourselves) is the admin, by socket auth.
    _services_run "$user" "$(_services_mysql_bin mariadb-install-db)" --no-defaults --datadir="$data" \
      --auth-root-authentication-method=socket --auth-root-socket-user="${user:-$(id -un)}" \
      --skip-test-db --skip-name-resolve >"$sdir/install-db.log" 2>&1 ||
      { tail -n 30 "$sdir/install-db.log" >&2; _services_die "mariadb-install-db failed"; return 1; }
    rm -f "$sdir/provisioned"
  fi

  if pid="$(_services_mysql_pid "$sdir")"; then
    port="$(cat "$sdir/port" 2>/dev/null)"
    if [ -n "$port" ] && _services_mysql_admin "$user" "$sock" -e 'SELECT 1' >/dev/null 2>&1; then
      _services_log "MariaDB already running in $data on port $port"
      _services_mysql_export "$sdir" "$port" "$sock"
      return 0
    fi
    _services_mysql_stop_pid "$pid"
  fi

  for _ in 1 2 3 4 5; do
    port="$(_services_free_port)" || return 1
    rm -f "$sock" "$sdir/mysqld.pid"
    : >"$sdir/server.log"
    [ -n "$user" ] && chown "$user:" "$sdir/server.log"
    # setsid + closed stdin: the server outlives this shell and ignores its terminal.
    _services_run "$user" setsid "$mariadbd" --no-defaults --datadir="$data" --port="$port" \
      --bind-address=127.0.0.1 --socket="$sock" --pid-file="$sdir/mysqld.pid" --log-error="$sdir/server.log" \
      --tmpdir="$sdir" --skip-name-resolve --skip-log-bin --character-set-server=utf8mb4 \
      --collation-server=utf8mb4_unicode_ci "$@" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 120); do
      if _services_mysql_admin "$user" "$sock" -e 'SELECT 1' >/dev/null 2>&1; then
        break
      fi
      if ! kill -0 $! 2>/dev/null && ! _services_mysql_pid "$sdir" >/dev/null; then
        break
      fi
      sleep 0.5
    done
    if _services_mysql_admin "$user" "$sock" -e 'SELECT 1' >/dev/null 2>&1; then
      echo "$port" >"$sdir/port"
      if [ ! -f "$sdir/provisioned" ]; then
        _services_mysql_admin "$user" "$sock" -e "
          CREATE DATABASE IF NOT EXISTS sluicegate_test CHARACTER SET utf8mb4;
          CREATE USER IF NOT EXISTS 'sluicegate'@'127.0.0.1' IDENTIFIED BY 'sluicegate';
          CREATE USER IF NOT EXISTS 'sluicegate'@'localhost' IDENTIFIED BY 'sluicegate';
          GRANT ALL PRIVILEGES ON sluicegate_test.* TO 'sluicegate'@'127.0.0.1';
          GRANT ALL PRIVILEGES ON sluicegate_test.* TO 'sluicegate'@'localhost';" ||
          { _services_die "cannot create the test database and user"; return 1; }
        touch "$sdir/provisioned"
      fi
      _services_log "MariaDB $("$mariadbd" --version | awk '{print $3}') on 127.0.0.1:$port (data $data)"
      _services_mysql_export "$sdir" "$port" "$sock"
      return 0
    fi
    if grep -q "Address already in use\|Can't start server: Bind on TCP/IP port" "$sdir/server.log" 2>/dev/null; then
      _services_log "port $port was taken meanwhile; trying another"
      pid="$(_services_mysql_pid "$sdir")" && _services_mysql_stop_pid "$pid"
      continue
    fi
    tail -n 30 "$sdir/server.log" >&2
    pid="$(_services_mysql_pid "$sdir")" && _services_mysql_stop_pid "$pid"
    _services_die "MariaDB did not start (log: $sdir/server.log)"
    return 1
  done
  _services_die "MariaDB did not start after 5 ports"
}

# Stop a MariaDB server by pid: SIGTERM is its clean shutdown; wait up to 60 s, then SIGKILL.
_services_mysql_stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
}

_services_mysql_stop() {
  local sdir="$1/mysql" pid
  [ -d "$sdir" ] || return 0
  if pid="$(_services_mysql_pid "$sdir")"; then
    _services_mysql_stop_pid "$pid"
    _services_log "MariaDB in $sdir stopped"
  fi
}

# ---------------------------------------------------------------------------------------------

# services_start pg|mysql DIR [server options...]
services_start() {
  local kind="${1:-}" dir="${2:-}"
  [ -n "$dir" ] || { _services_die "usage: services_start pg|mysql DIR [server options...]"; return 1; }
  shift 2
  mkdir -p "$dir" || return 1
  dir="$(cd "$dir" && pwd)"
  case "$kind" in
    pg) _services_pg_start "$dir" "$@" ;;
    mysql) _services_mysql_start "$dir" "$@" ;;
    *) _services_die "services_start: pg or mysql, not '$kind'"; return 1 ;;
  esac
}

# services_stop DIR: stop every server started under DIR (no-op when none runs).
services_stop() {
  local dir="${1:-}"
  [ -n "$dir" ] || { _services_die "usage: services_stop DIR"; return 1; }
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  _services_pg_stop "$dir"
  _services_mysql_stop "$dir"
  local f
  for f in "$dir/pg/socket_dir" "$dir/mysql/socket_dir"; do
    [ -f "$f" ] && rm -rf "$(cat "$f")" "$f"
  done
  return 0
}
