#!/usr/bin/env bash
# testdb.sh: a throwaway PostgreSQL 15 + pgvector for the tests.
#
#   scripts/testdb.sh run -- go test -race ./...
#
# runs the command with SCOPEMEM_TEST_DATABASE_URL pointing at a fresh
# cluster, then stops and removes the cluster and exits with the command's
# status. When SCOPEMEM_TEST_DATABASE_URL is already set, the command runs
# against that database and nothing is started.
#
#   scripts/testdb.sh install
#
# only makes sure PostgreSQL 15 and pgvector are installed (needs root or
# password-less sudo; uses apt-get, and builds pgvector from Debian's source
# package when no binary package is available).
#
#   scripts/testdb.sh cluster create DIR    (prints the superuser URL)
#   scripts/testdb.sh cluster stop DIR      (pg_ctl stop -m fast)
#   scripts/testdb.sh cluster start DIR     (again, on the same port)
#   scripts/testdb.sh cluster freeze DIR    (SIGSTOP every server process)
#   scripts/testdb.sh cluster thaw DIR      (SIGCONT them)
#   scripts/testdb.sh cluster destroy DIR
#
# manage a private cluster in DIR for a test that must stop, restart or
# freeze its database (internal/app's restart test) without touching the
# shared one. DIR must not exist yet or be empty, and its parent must be
# traversable by the cluster's user (a directory under /tmp is). create
# needs PostgreSQL and pgvector installed already (scripts/testdb.sh
# install) and prints the URL of a superuser and the database
# scopemem_test on stdout; the cluster keeps running, with the settings of
# the throwaway one, until destroy.
#
# The URL names a superuser of the throwaway cluster: tests create their own
# databases, owner and runtime roles from it. The cluster runs as a
# non-root user (scopemem-test, created when running as root), listens on a
# free loopback port, keeps its socket in its own temporary directory and is
# tuned for speed, not durability (fsync off).
#
# Environment:
#   SCOPEMEM_PG_BIN        PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   SCOPEMEM_PG_CACHE      where the pgvector source build is kept (default /var/cache/scopemem)
#   SCOPEMEM_PG_KEEP=1     keep the cluster directory after the run (for debugging)
#
# With Docker, the documented alternative is:
#   docker run -d -p 5432:5432 -e POSTGRES_PASSWORD=pw pgvector/pgvector:pg15
#   SCOPEMEM_TEST_DATABASE_URL=postgres://postgres:pw@127.0.0.1:5432/postgres go test -race ./...
set -euo pipefail

PG_MAJOR=15
PG_BIN=${SCOPEMEM_PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
CACHE_DIR=${SCOPEMEM_PG_CACHE:-/var/cache/scopemem}
RUN_USER_NAME=scopemem-test
APT_SOURCE_FILE=/etc/apt/sources.list.d/scopemem-trixie-src.sources

log() { printf 'testdb: %s\n' "$*" >&2; }
die() { printf 'testdb: error: %s\n' "$*" >&2; exit 1; }

usage() {
	cat >&2 <<'EOF'
usage: scripts/testdb.sh run -- <command> [args...]
       scripts/testdb.sh install
       scripts/testdb.sh cluster create|stop|start|freeze|thaw|destroy DIR

run      start a throwaway PostgreSQL with pgvector, run the command with
         SCOPEMEM_TEST_DATABASE_URL set, then remove the cluster
install  only install PostgreSQL 15 and pgvector when missing
cluster  a private cluster in DIR that a test stops, restarts or freezes:
         create prints its superuser URL; destroy stops it and removes DIR
EOF
	exit 2
}

# as_root runs a command as root: directly, or through password-less sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "installing needs root: run 'sudo scripts/testdb.sh install' once, or set SCOPEMEM_TEST_DATABASE_URL to a PostgreSQL with pgvector"
	fi
}

APT_UPDATED=0
# apt_install installs the packages that are not installed yet, refreshing
# the package lists only when a package cannot be found.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
		[ "$APT_UPDATED" -eq 1 ] && die "apt-get install ${missing[*]} failed"
		as_root apt-get update -q >&2
		APT_UPDATED=1
		as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
	fi
}

ensure_postgres() {
	[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && return 0
	log "PostgreSQL $PG_MAJOR server binaries not found in $PG_BIN"
	apt_install "postgresql-$PG_MAJOR"
	[ -x "$PG_BIN/postgres" ] || die "postgresql-$PG_MAJOR is installed but $PG_BIN/postgres is missing"
}

pgvector_installed() {
	local share
	share=$("$PG_BIN/pg_config" --sharedir)
	[ -f "$share/extension/vector.control" ]
}

# add_trixie_sources adds a deb-src entry for Debian trixie, where the
# pgvector source package lives (bookworm has none), in the format the
# machine's own sources use.
add_trixie_sources() {
	local deb822=/etc/apt/sources.list.d/debian.sources uri=http://deb.debian.org/debian keyring=
	if [ -f "$deb822" ] && grep -q '^Types:' "$deb822"; then
		uri=$(awk '/^URIs:/ {print $2; exit}' "$deb822")
		keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$deb822")
		[ -n "$uri" ] || uri=http://deb.debian.org/debian
		{
			echo "# Added by scopemem scripts/testdb.sh to build pgvector from source."
			echo "Types: deb-src"
			echo "URIs: $uri"
			echo "Suites: trixie"
			echo "Components: main"
			[ -n "$keyring" ] && echo "Signed-By: $keyring"
		} | as_root tee "$APT_SOURCE_FILE" >/dev/null
		SRC_LIST_FILE=$APT_SOURCE_FILE
	else
		# one-line format (/etc/apt/sources.list)
		uri=$(awk '$1 == "deb" && $0 ~ /debian/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null || true)
		[ -n "$uri" ] || uri=http://deb.debian.org/debian
		SRC_LIST_FILE=/etc/apt/sources.list.d/scopemem-trixie-src.list
		echo "deb-src $uri trixie main" | as_root tee "$SRC_LIST_FILE" >/dev/null
	fi
	# Refresh only this source: the other lists stay as they are.
	log "fetching the trixie source index ($uri)"
	as_root apt-get update -q \
		-o Dir::Etc::sourcelist="$SRC_LIST_FILE" -o Dir::Etc::sourceparts=- \
		-o APT::Get::List-Cleanup=0 >&2
}

ensure_pgvector() {
	pgvector_installed && return 0
	local start=$SECONDS
	log "pgvector is not installed for PostgreSQL $PG_MAJOR: building it from Debian's source package"
	apt_install "postgresql-server-dev-$PG_MAJOR" build-essential dpkg-dev
	local src
	src=$(find "$CACHE_DIR/pgvector" -maxdepth 2 -name vector.control -path '*/pgvector-*' 2>/dev/null | head -n1 || true)
	if [ -z "$src" ]; then
		add_trixie_sources
		as_root mkdir -p "$CACHE_DIR/pgvector"
		# apt-get source fetches as the _apt user when it can; the target
		# directory must be writable for it, so fetch into a world-writable
		# temporary directory and move the result into the cache.
		local tmp
		tmp=$(mktemp -d)
		chmod 0777 "$tmp"
		(cd "$tmp" && as_root apt-get source -q pgvector >&2) || die "apt-get source pgvector failed (is the trixie deb-src entry in $SRC_LIST_FILE reachable?)"
		as_root cp -a "$tmp"/. "$CACHE_DIR/pgvector/"
		as_root rm -rf "$tmp"
		src=$(find "$CACHE_DIR/pgvector" -maxdepth 2 -name vector.control -path '*/pgvector-*' | head -n1)
		[ -n "$src" ] || die "apt-get source pgvector did not unpack a pgvector source tree in $CACHE_DIR/pgvector"
	fi
	src=$(dirname "$src")
	log "building pgvector in $src"
	as_root make -C "$src" -s -j"$(nproc)" PG_CONFIG="$PG_BIN/pg_config" >&2
	as_root make -C "$src" -s install PG_CONFIG="$PG_BIN/pg_config" >&2
	pgvector_installed || die "make install finished but vector.control is still missing from $("$PG_BIN/pg_config" --sharedir)/extension"
	log "pgvector installed in $((SECONDS - start)) s"
}

# run_user picks the user the cluster runs as: PostgreSQL refuses to run as
# root, so root uses a dedicated system user.
run_user() {
	if [ "$(id -u)" -ne 0 ]; then
		RUN_USER=$(id -un)
		return
	fi
	RUN_USER=$RUN_USER_NAME
	if ! id "$RUN_USER" >/dev/null 2>&1; then
		log "creating system user $RUN_USER to run the test cluster"
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER" 2>/dev/null ||
			id "$RUN_USER" >/dev/null 2>&1 || die "could not create user $RUN_USER"
	fi
}

# as_run_user runs a command as the cluster's user.
as_run_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$RUN_USER" -- "$@"
	else
		"$@"
	fi
}

CLUSTER_DIR=
PG_STARTED=0
cleanup() {
	if [ "$PG_STARTED" -eq 1 ]; then
		as_run_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$CLUSTER_DIR" ] && [ -d "$CLUSTER_DIR" ]; then
		if [ "${SCOPEMEM_PG_KEEP:-}" = 1 ]; then
			log "kept $CLUSTER_DIR"
		else
			rm -rf "$CLUSTER_DIR"
		fi
	fi
}

# init_cluster creates a cluster in $CLUSTER_DIR/data, owned by $RUN_USER,
# with a random superuser password (set in PASSWORD) and the settings of
# a throwaway test cluster in postgresql.conf, so that a later pg_ctl
# start needs no options.
init_cluster() {
	PASSWORD=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
	printf '%s\n' "$PASSWORD" | as_run_user tee "$CLUSTER_DIR/pwfile" >/dev/null
	as_run_user "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --pwfile="$CLUSTER_DIR/pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/initdb.log" >&2; die "initdb failed"; }
	rm -f "$CLUSTER_DIR/pwfile"
	printf '%s\n' "# scopemem test cluster: fast, not durable" \
		"listen_addresses = '127.0.0.1'" "unix_socket_directories = '$CLUSTER_DIR'" \
		"fsync = off" "synchronous_commit = off" "full_page_writes = off" \
		"max_connections = 300" "shared_buffers = 128MB" |
		as_run_user tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null
}

# port_taken reports whether the cluster's last start failed because its
# port was in use.
port_taken() {
	tail -n 8 "$CLUSTER_DIR/server.log" 2>/dev/null | grep -q 'could not bind\|Address already in use'
}

# start_new_cluster starts the cluster of init_cluster on a free loopback
# port (set in PORT and kept in postgresql.conf for later starts) and
# creates the database scopemem_test.
start_new_cluster() {
	local tries=0 low=32768 base span
	# Below the kernel's ephemeral range: while the cluster is stopped, a
	# client's outgoing connection (or one connecting to itself while
	# retrying the stopped server's port) could otherwise take the port
	# and keep the cluster from starting again on it.
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	base=10000 span=$((low - 10000))
	if [ "$span" -lt 1000 ]; then
		base=1024 span=$((low - 1024))
	fi
	while :; do
		tries=$((tries + 1))
		PORT=$((base + (RANDOM * 32768 + RANDOM) % span))
		# The last setting in the file wins: each try appends its port.
		echo "port = $PORT" | as_run_user tee -a "$CLUSTER_DIR/data/postgresql.conf" >/dev/null
		if as_run_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 30 start >/dev/null 2>&1; then
			PG_STARTED=1
			break
		fi
		if [ "$tries" -ge 10 ] || ! port_taken; then
			cat "$CLUSTER_DIR/server.log" >&2 || true
			die "could not start PostgreSQL"
		fi
		: >"$CLUSTER_DIR/server.log"
	done
	as_run_user "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$CLUSTER_DIR" -p "$PORT" -U postgres -d postgres \
		-c 'CREATE DATABASE scopemem_test' >&2
}

start_cluster() {
	run_user
	CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/scopemem-pg.XXXXXX")
	chmod 0755 "$CLUSTER_DIR"
	[ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$CLUSTER_DIR"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	init_cluster
	start_new_cluster
	export SCOPEMEM_TEST_DATABASE_URL="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/scopemem_test?sslmode=disable"
	log "PostgreSQL $PG_MAJOR with pgvector on 127.0.0.1:$PORT ($CLUSTER_DIR)"
}

# server_pids prints the pid of the cluster's postmaster, then those of its
# children.
server_pids() {
	local pid
	pid=$(head -n1 "$CLUSTER_DIR/data/postmaster.pid" 2>/dev/null) || die "no server running in $CLUSTER_DIR"
	{ [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || die "no server running in $CLUSTER_DIR"
	echo "$pid"
	ps -o pid= --ppid "$pid" || true
}

# cmd_cluster manages the private cluster of `scripts/testdb.sh cluster`.
cmd_cluster() {
	[ $# -eq 2 ] || usage
	local action=$1
	CLUSTER_DIR=$2
	case "$CLUSTER_DIR" in
	/*) ;;
	*) CLUSTER_DIR=$PWD/$CLUSTER_DIR ;;
	esac
	run_user
	case "$action" in
	create)
		{ [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && pgvector_installed; } ||
			die "PostgreSQL $PG_MAJOR with pgvector is not installed in $PG_BIN: run scripts/testdb.sh install"
		mkdir -p "$CLUSTER_DIR"
		[ -z "$(ls -A "$CLUSTER_DIR")" ] || die "$CLUSTER_DIR is not empty: give a new or empty directory"
		chmod 0755 "$CLUSTER_DIR"
		if [ "$(id -u)" -eq 0 ]; then
			chown "$RUN_USER" "$CLUSTER_DIR"
		fi
		as_run_user test -w "$CLUSTER_DIR" ||
			die "$RUN_USER cannot write to $CLUSTER_DIR: put it under a directory every user may traverse, such as /tmp"
		init_cluster
		start_new_cluster
		echo "postgres://postgres:$PASSWORD@127.0.0.1:$PORT/scopemem_test?sslmode=disable"
		;;
	stop)
		as_run_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w -t 30 stop >/dev/null
		;;
	start)
		# The port stays the cluster's: if something holds it for a
		# moment (a connection in its last state), try again for a while.
		local tries=0
		until as_run_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w -t 30 start >/dev/null 2>&1; do
			tries=$((tries + 1))
			if [ "$tries" -ge 20 ] || ! port_taken; then
				tail -n 20 "$CLUSTER_DIR/server.log" >&2
				die "could not start PostgreSQL in $CLUSTER_DIR"
			fi
			sleep 0.5
		done
		;;
	freeze)
		# The postmaster first, so that it forks no new backend meanwhile.
		# shellcheck disable=SC2046 # one pid per word
		as_run_user kill -STOP $(server_pids)
		;;
	thaw)
		# shellcheck disable=SC2046
		as_run_user kill -CONT $(server_pids)
		;;
	destroy)
		if [ -f "$CLUSTER_DIR/data/postmaster.pid" ]; then
			# A frozen server would not act on the stop request.
			# shellcheck disable=SC2046
			as_run_user kill -CONT $(server_pids) 2>/dev/null || true
			as_run_user "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
		fi
		rm -rf "$CLUSTER_DIR"
		;;
	*) usage ;;
	esac
}

cmd_run() {
	[ $# -ge 1 ] || usage
	if [ -n "${SCOPEMEM_TEST_DATABASE_URL:-}" ]; then
		log "using SCOPEMEM_TEST_DATABASE_URL from the environment"
		exec "$@"
	fi
	ensure_postgres
	ensure_pgvector
	start_cluster
	set +e
	"$@"
	local status=$?
	set -e
	exit "$status"
}

main() {
	[ $# -ge 1 ] || usage
	local sub=$1
	shift
	case "$sub" in
	run)
		[ "${1:-}" = -- ] && shift
		cmd_run "$@"
		;;
	install)
		ensure_postgres
		ensure_pgvector
		;;
	cluster) cmd_cluster "$@" ;;
	*) usage ;;
	esac
}

main "$@"
