"""
The ``callcenter`` command: administration without starting the server.

    callcenter check-config [--no-probe] FILE
    callcenter config-reference
    callcenter db upgrade [--config FILE]
    callcenter db current [--config FILE]
    callcenter demo load [--config FILE] [--data DIR]

Problems are reported one per line on standard error with exit status 2.
"""

import argparse
import sys

from callcenter.config import probe_listeners
from callcenter.errors import ConfigError
from callcenter.store.database import Database, DatabaseError
from callcenter.tap import CONFIG_ERROR, default_config_path, exit_with, load


def _database(config):
    try:
        return Database(config.storage.url, config.storage.busy_timeout)
    except DatabaseError as e:
        exit_with([f"{config.where('storage', 'url')}: {e}"], CONFIG_ERROR)


def _database_problem(config, action):
    try:
        return action()
    except DatabaseError as e:
        exit_with([f"{config.where('storage', 'url')}: {e}"], CONFIG_ERROR)


def check_config(args):
    from twisted.internet import reactor

    config, _ = load(args.file)
    enabled = ", ".join(sorted(config.subsystems)) or "none"
    if args.no_probe:
        print(f"{args.file}: ok (ports and database not probed; subsystems: {enabled})")
        return
    problems = probe_listeners(config, reactor)
    try:
        database = Database(config.storage.url, config.storage.busy_timeout)
        try:
            creating = database.check()
        finally:
            database.engine.dispose()
    except DatabaseError as e:
        problems.insert(0, f"{config.where('storage', 'url')}: {e}")
    if problems:
        exit_with(problems, CONFIG_ERROR)
    schema = "will be created at start" if creating else "up to date"
    print(f"{args.file}: ok (database {database.display_url}: schema {schema}; subsystems: {enabled})")


def config_reference(args):
    from callcenter.config import reference
    from callcenter.subsystems import discover

    print(reference(discover()))


def db_upgrade(args):
    config, _ = load(args.config)
    database = _database(config)
    try:
        _database_problem(config, database.upgrade)
        print(f"database {database.display_url} at schema revision {database.current_revision()}")
    finally:
        database.close()


def db_current(args):
    config, _ = load(args.config)
    database = _database(config)
    try:
        current, _ = _database_problem(config, database.state)
        print(f"database {database.display_url}: revision {current or 'none'}, code head {database.head()}")
    finally:
        database.engine.dispose()


def demo_load(args):
    from callcenter.demo import load_demo

    config, _ = load(args.config)
    database = _database(config)
    try:
        _database_problem(config, database.open)
        try:
            counts = load_demo(database, args.data)
        except (OSError, ValueError) as e:
            exit_with([str(e)], CONFIG_ERROR)
        summary = ", ".join(f"{table} {count}" for table, count in counts.items())
        print(f"demo data loaded into {database.display_url}: {summary}")
    finally:
        database.close()


def _parser():
    parser = argparse.ArgumentParser(prog="callcenter", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check-config", help="validate a configuration file and the ports and database it names"
    )
    check.add_argument("file")
    check.add_argument(
        "--no-probe",
        action="store_true",
        help="only validate the file: do not try its ports or database (e.g. while the server runs)",
    )
    check.set_defaults(run=check_config)

    commands.add_parser(
        "config-reference", help="print every table and key the installed subsystems accept"
    ).set_defaults(run=config_reference)

    def with_config(p):
        p.add_argument(
            "--config", "-c", default=None, help="configuration file [$CALLCENTER_CONFIG or etc/callcenter.toml]"
        )

    db = commands.add_parser("db", help="the database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    upgrade = db.add_parser("upgrade", help="migrate the schema to this version")
    with_config(upgrade)
    upgrade.set_defaults(run=db_upgrade)
    current = db.add_parser("current", help="show the schema revision")
    with_config(current)
    current.set_defaults(run=db_current)

    demo = commands.add_parser("demo", help="the demo data set").add_subparsers(
        dest="demo_command", required=True, metavar="ACTION"
    )
    demo_loader = demo.add_parser("load", help="load the demo data set (idempotent)")
    with_config(demo_loader)
    demo_loader.add_argument("--data", default="etc", help="directory holding instruments.csv and demo/ [etc]")
    demo_loader.set_defaults(run=demo_load)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if getattr(args, "config", "") is None:
        args.config = default_config_path()
    try:
        args.run(args)
    except ConfigError as e:
        exit_with(e.problems, CONFIG_ERROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
