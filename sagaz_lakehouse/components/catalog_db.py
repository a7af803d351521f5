"""PostgreSQL: the database of the bundled Iceberg REST catalog where ``catalog.database`` is ``postgresql`` (the
prod default; prod refuses sqlite). Only the catalog connects to it.

Containers run the official image's interface (docker-library/postgres ``docker-entrypoint.sh``): it initialises
``PGDATA`` on first start with ``POSTGRES_USER`` as the superuser, the password from ``POSTGRES_PASSWORD_FILE`` (a
secret file in the instance's secrets folder: compose's secrets volume, the Kubernetes Secret) and the database
``POSTGRES_DB``, and stops on SIGINT, PostgreSQL's fast shutdown (its Dockerfile's
``STOPSIGNAL``; SIGTERM is the "smart" shutdown, which waits for the catalog's pooled connections forever).

The local target runs Debian's ``postgresql-<major>`` package (``/usr/lib/postgresql/<major>/bin``) with the same
first-start steps (``start.sh``): ``initdb`` with the password from a 0600 file, the database created in single-user
mode, then the server on loopback only, without a Unix socket. PostgreSQL refuses to run as root: a root CLI starts
it as the package's ``postgres`` user, with only the capability to traverse (not write) the run folder's private
parents (``setpriv``, ambient ``CAP_DAC_READ_SEARCH``); its data folder is that user's.
"""

from __future__ import annotations

from sagaz_lakehouse import addresses, identities, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Settings

DB_USER = "iceberg"  # the catalog's PostgreSQL user (POSTGRES_USER)
DB_NAME = "iceberg_catalog"  # its database (POSTGRES_DB)
DATA_DIR = "/var/lib/postgresql/data"  # the official image's VOLUME
PGDATA = f"{DATA_DIR}/pgdata"  # a folder below the volume's root (a claim's root may hold lost+found)
IMAGE_UID = 999  # the postgres user of the official image (and of the stand-in image)
PASSWORD_FILE = "db-password"  # noqa: S105 - a file name; written 0600
START_SCRIPT = "start.sh"
# Its root file system is read-only like every other: the server's lock file and socket folder, and /tmp.
SCRATCH = (s.Scratch("/var/run/postgresql", "16Mi", used="1Mi"), s.Scratch(s.TMP, "16Mi", used="1Mi"))

# Native: $1 the package's bin folder, $2 the instance's data folder, $3 the port, $4 the config folder.
START = f"""set -eu
bin=$1 data=$2/pgdata port=$3 conf=$4
as_db=""
mkdir -p "$data"
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$data"
  as_db="setpriv --reuid=postgres --regid=postgres --clear-groups --inh-caps=+dac_read_search \\
--ambient-caps=+dac_read_search --"
fi
chmod 700 "$data"
if [ ! -s "$data/PG_VERSION" ]; then
  $as_db "$bin/initdb" -D "$data" -U {DB_USER} --pwfile=/dev/stdin --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 \\
    < "$conf/{PASSWORD_FILE}"
  echo "CREATE DATABASE {DB_NAME};" | $as_db "$bin/postgres" --single -D "$data" postgres >/dev/null
fi
exec $as_db "$bin/postgres" -D "$data" -p "$port" -c listen_addresses=127.0.0.1 -c unix_socket_directories=
"""


def catalog_db(settings: Settings, view: s.View) -> s.Component | None:
    if settings.catalog_database != "postgresql":
        return None

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:
            # The data folder (inside the run folder) is on the command line: the supervisor's marker.
            return s.Process(["sh", f"{at.conf}/{START_SCRIPT}", str(ctx.home), at.data,
                              str(settings.ports.catalog_db), at.conf])

        return s.Setup(
            container=s.Container(env={"POSTGRES_USER": DB_USER, "POSTGRES_DB": DB_NAME, "PGDATA": PGDATA,
                                       # the official entrypoint reads the password from this file (file_env)
                                       "POSTGRES_PASSWORD_FILE": at.secret(PASSWORD_FILE)},
                                  user=IMAGE_UID, probe_tool="bash", scratch=SCRATCH),
            native=s.Native("postgresql", command),
            files=(s.ConfigFile(START_SCRIPT, START),
                   s.ConfigFile(PASSWORD_FILE, identities.CATALOG_DB_PASSWORD + "\n", mount=at.secret(PASSWORD_FILE),
                                secret=True)))

    return s.Component(
        s.CATALOG_DB, "postgresql", settings.images.catalog_db, versions.POSTGRES.version,
        "PostgreSQL (the Iceberg catalog's tables)", setup,
        ports=(s.Port("postgres", addresses.POSTGRES_PORT, settings.ports.catalog_db, published=False,
                      setting="catalog_db"),),
        health=s.Health("postgres", "postgres"), data_dir=DATA_DIR, volume_size=settings.volumes.catalog_db,
        memory=settings.memory.catalog_db, start_seconds=120)  # reaches nothing; only rest-catalog reaches it
