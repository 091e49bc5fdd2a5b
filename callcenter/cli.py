"""
The ``callcenter`` command: administration without starting the server.

    callcenter check-config [--no-probe] FILE
    callcenter config-reference
    callcenter db upgrade [--config FILE]
    callcenter db current [--config FILE]
    callcenter demo load [--config FILE] [--data DIR]
    callcenter instruments load [--config FILE] CSV
    callcenter account open [--config FILE] --branch CODE --name-zh NAME [--name-en NAME]
        [--mobile NUMBER] [--language zh|en] --sse ACCOUNT --szse ACCOUNT [--account-no NUMBER]
        [--password-stdin]
    callcenter account deposit|withdraw [--config FILE] ACCOUNT AMOUNT_CNY [--reference TEXT]
    callcenter account reset-password [--config FILE] ACCOUNT [--password-stdin]
    callcenter account unlock [--config FILE] ACCOUNT
    callcenter account callers [--config FILE] ACCOUNT [NUMBER ...]
    callcenter account limit [--config FILE] ACCOUNT AMOUNT_CNY|none
    callcenter account show [--config FILE] ACCOUNT
    callcenter audit verify [--config FILE] [--anchor SEQ:HASH]
    callcenter audit head [--config FILE]
    callcenter hash-pin [--pin-stdin]
    callcenter prompts build [--dir DIR] [--lang zh|en ...] [--instruments CSV] [--force]
    callcenter ivr category add [--config FILE] CODE NAME_ZH NAME_EN
    callcenter ivr editor add [--config FILE] ID NAME [--pin-stdin] [--category CODE ...]
    callcenter ivr editor allow|revoke [--config FILE] ID CODE...
    callcenter ivr editor unlock [--config FILE] ID
    callcenter ivr expert add [--config FILE] NO NAME_ZH NAME_EN [--pin-stdin]
    callcenter ivr expert unlock [--config FILE] NO
    callcenter internet open [--config FILE] FUND_ACCOUNT USERNAME [--tier TIER] [--chap] [--language zh|en]
        [--password-stdin]
    callcenter internet enable|disable|unlock|show [--config FILE] USERNAME
    callcenter internet tier [--config FILE] USERNAME TIER
    callcenter internet passwd [--config FILE] USERNAME [--chap|--no-chap] [--password-stdin]
    callcenter internet tiers [--config FILE]
    callcenter internet tier-add [--config FILE] NAME --hours H|unlimited [--idle SECONDS] [--simultaneous N]
    callcenter internet online [--config FILE] [--user USERNAME] [--client NAS]
    callcenter internet kick [--config FILE] SESSION_ID --agent ID [--password-stdin] [--url URL]
    callcenter notify subscribe [--config FILE] FUND_ACCOUNT sms|pager|email|webhook ADDRESS
        [--events fill,alert,rejection] [--language zh|en] [--quiet HH:MM-HH:MM]
    callcenter notify unsubscribe [--config FILE] FUND_ACCOUNT CHANNEL ADDRESS
    callcenter notify subscriptions [--config FILE] FUND_ACCOUNT
    callcenter notify messages [--config FILE] [--account FUND_ACCOUNT] [--state STATE] [--limit N]
    callcenter notify show|retry [--config FILE] MESSAGE_ID

Problems are reported one per line on standard error with exit status 2;
audit verify exits with status 1 when the audit log is not intact, internet
kick when the NAS did not end the session.
Account changes are audited under the name of the user running the command.
"""

import argparse
import getpass
import sys
import time

import sqlalchemy

from callcenter.config import probe_listeners
from callcenter.errors import ConfigError
from callcenter.store.database import Database, DatabaseError
from callcenter.tap import CONFIG_ERROR, default_config_path, exit_with, load

# What `audit verify` exits with when the chain is broken, apart from the 2
# of a command that could not run.
AUDIT_BROKEN = 1


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


def _chap_key_variable(config):
    """The environment variable holding the key of CHAP secrets, as the [radius] table names it."""
    from callcenter.radius.chap import CHAP_KEY_VARIABLE

    return getattr(config.subsystems.get("radius"), "chap_key_variable", CHAP_KEY_VARIABLE)


def _configured_chap_secrets(config):
    """The L{ChapSecrets} sealing CHAP passwords, or None when no key is set."""
    from callcenter.radius.chap import ChapSecretError, chap_secrets_from_environment

    try:
        return chap_secrets_from_environment(_chap_key_variable(config))
    except ChapSecretError as e:
        exit_with([str(e)], CONFIG_ERROR)


def demo_load(args):
    from callcenter.demo import load_demo

    config, _ = load(args.config)
    database = _database(config)
    try:
        _database_problem(config, database.open)
        try:
            # Without a CHAP key, demo internet accounts are PAP only.
            counts = load_demo(database, args.data, chap_secrets=_configured_chap_secrets(config))
        except (OSError, ValueError) as e:
            exit_with([str(e)], CONFIG_ERROR)
        summary = ", ".join(f"{table} {count}" for table, count in counts.items())
        print(f"demo data loaded into {database.display_url}: {summary}")
    finally:
        database.close()


def _opened(args):
    """The configured database, which must already have its schema: looking changes nothing."""
    config, _ = load(args.config)
    database = _database(config)
    if _database_problem(config, database.check):
        database.engine.dispose()
        exit_with(
            [f"{config.where('storage', 'url')}: database {database.display_url} has no callcenter schema yet: "
             "run 'callcenter db upgrade'"],
            CONFIG_ERROR,
        )
    return database


def _database_failed(database, error):
    exit_with([f"database {database.display_url}: {' '.join(str(error.orig).split())}"], CONFIG_ERROR)


def _run(database, work, *args):
    """C{database.transaction(work, *args)}, a database failure told in one line."""
    try:
        return database.transaction(work, *args)
    except sqlalchemy.exc.DBAPIError as e:
        _database_failed(database, e)


def _in_database(args, work, *work_args, refused=()):
    """
    C{work(connection, *work_args)} in a transaction of the configured
    database, opened for it and closed after; an exception of C{refused}
    (a mistake in what was asked) is told in one line.
    """
    database = _opened(args)
    try:
        return _run(database, work, *work_args)
    except refused as e:
        exit_with([str(e)], CONFIG_ERROR)
    finally:
        database.close()


def _staff_origin():
    from callcenter.store.schema import audit_log
    from callcenter.trading.model import Origin

    user = getpass.getuser()
    longest = audit_log.c.agent_id.type.length
    if len(user) > longest:
        exit_with([f"user name {user!r} is longer than the {longest} characters the audit log records"],
                  CONFIG_ERROR)
    return Origin("staff", agent_id=user)


def _staff_change(args, operation, *operation_args):
    """
    Run an operation of L{callcenter.trading.admin} for the user running the
    command.  A refusal is reported, and audited on its own since its
    transaction rolled back.
    """
    from callcenter.trading.admin import AdminError, record_refusal

    origin = _staff_origin()
    database = _opened(args)
    try:
        try:
            return _run(database, operation, origin, *operation_args)
        except AdminError as e:
            if e.action:
                _run(database, record_refusal, origin, e)
            exit_with([str(e)], CONFIG_ERROR)
    finally:
        database.close()


def _fen(text):
    """CNY as typed ("1000.50") to integer fen, exactly."""
    from callcenter.trading.money import parse_cny

    try:
        return parse_cny(text)
    except ValueError as e:
        exit_with([str(e)], CONFIG_ERROR)


def _new_password(args):
    """
    The new trading password, hashed: from standard input with
    --password-stdin, else asked twice without echo.  Never from the
    command line, where other users see it in the process list.
    """
    from callcenter.trading.admin import AdminError, hash_trading_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        exit_with(["no terminal to ask for the trading password: give it on standard input with --password-stdin"],
                  CONFIG_ERROR)
    else:
        password = getpass.getpass("new trading password (6 digits): ")
        if getpass.getpass("the same again: ") != password:
            exit_with(["the two passwords differ"], CONFIG_ERROR)
    try:
        return hash_trading_password(password)
    except AdminError as e:
        exit_with([str(e)], CONFIG_ERROR)


def account_open(args):
    from callcenter.trading.admin import open_account

    password = _new_password(args)
    account_no = _staff_change(
        args, open_account, args.branch, args.name_zh.strip(), (args.name_en or "").strip(),
        (args.mobile or "").strip(), args.language, password, args.sse, args.szse, args.account_no,
    )
    print(f"opened account {account_no} at branch {args.branch}")


def account_deposit(args):
    from callcenter.trading.admin import deposit
    from callcenter.trading.money import format_cny

    amount = _fen(args.amount)
    available = _staff_change(args, deposit, args.account, amount, args.reference)
    print(f"account {args.account}: deposited {format_cny(amount)} CNY, {format_cny(available)} CNY available")


def account_withdraw(args):
    from callcenter.trading.admin import withdraw
    from callcenter.trading.money import format_cny

    amount = _fen(args.amount)
    available = _staff_change(args, withdraw, args.account, amount, args.reference)
    print(f"account {args.account}: withdrew {format_cny(amount)} CNY, {format_cny(available)} CNY available")


def account_reset_password(args):
    from callcenter.trading.admin import reset_password

    password = _new_password(args)
    _staff_change(args, reset_password, args.account, password)
    print(f"account {args.account}: trading password reset, failed logins cleared, unlocked")


def account_unlock(args):
    from callcenter.trading.admin import unlock

    _staff_change(args, unlock, args.account)
    print(f"account {args.account}: failed logins cleared, unlocked")


def account_callers(args):
    from callcenter.trading.admin import set_allowed_callers

    numbers = _staff_change(args, set_allowed_callers, args.account, args.numbers)
    allowed = f"only from {', '.join(numbers)}" if numbers else "from any number"
    print(f"account {args.account}: phone trading allowed {allowed}")


def account_limit(args):
    from callcenter.trading.admin import set_phone_daily_limit
    from callcenter.trading.money import format_cny

    amount = None if args.amount == "none" else _fen(args.amount)
    _staff_change(args, set_phone_daily_limit, args.account, amount)
    limit = "no daily limit" if amount is None else f"a daily limit of {format_cny(amount)} CNY"
    print(f"account {args.account}: phone orders have {limit}")


def account_show(args):
    from callcenter.trading.admin import AdminError, account_summary
    from callcenter.trading.money import format_cny

    summary = _in_database(args, account_summary, args.account, refused=AdminError)
    names = " / ".join(filter(None, (summary.name_zh, summary.name_en)))
    held = ", ".join(f"{exchange} {number}" for exchange, number in sorted(summary.shareholder_accounts.items()))
    locked = f"locked since {summary.locked_at:%Y-%m-%d %H:%M:%S}" if summary.locked_at else "not locked"
    limit = summary.phone_daily_limit_fen
    limit = "none" if limit is None else f"{format_cny(limit)} CNY"
    print(
        f"account {summary.account_no} at branch {summary.branch_code}\n"
        f"  investor: {names}, mobile {summary.mobile or 'none'}, language {summary.language}\n"
        f"  cash: {format_cny(summary.cash_available_fen)} CNY available, "
        f"{format_cny(summary.cash_frozen_fen)} CNY frozen\n"
        f"  shareholder accounts: {held or 'none'}\n"
        f"  logins: {summary.failed_logins} failed, {locked}\n"
        f"  phone trading: daily limit {limit}; callers {', '.join(summary.allowed_callers) or 'any'}"
    )


def _load_instruments(connection, origin, path):
    from callcenter.demo import load_instruments
    from callcenter.trading import audit

    counts = load_instruments(connection, path)
    audit.append(connection, origin, "load_instruments", "ok", None, counts)
    return counts


def instruments_load(args):
    counts = _in_database(args, _load_instruments, _staff_origin(), args.file, refused=(OSError, ValueError))
    print(f"instruments from {args.file}: {counts['inserted']} inserted, {counts['updated']} updated")


def _reading(database, work, *args):
    """
    C{work(connection, *args)} on a connection that reads without locking:
    L{Database} begins SQLite transactions with BEGIN IMMEDIATE, which would
    keep a running server from writing while a million audit rows are read.
    Here every statement reads its own snapshot (WAL readers block no one).
    """
    engine = sqlalchemy.create_engine(database.url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return work(connection, *args)
    except sqlalchemy.exc.DBAPIError as e:
        _database_failed(database, e)
    finally:
        engine.dispose()


def audit_verify(args):
    from callcenter.trading import audit

    anchor = None
    if args.anchor:
        try:
            anchor = audit.parse_anchor(args.anchor)
        except ValueError as e:
            exit_with([str(e)], CONFIG_ERROR)
    database = _opened(args)
    try:
        result = _reading(database, audit.verify, anchor)
    finally:
        database.engine.dispose()
    if not result.ok:
        exit_with([f"audit log: {result.problem}"], AUDIT_BROKEN)
    against = f", and matches the anchor at row {anchor[0]}" if anchor else ""
    print(f"audit log intact: {result.rows} rows, head {result.head_seq}:{result.head_hash}{against}")


def audit_head(args):
    from callcenter.trading import audit

    database = _opened(args)
    try:
        seq, hash_ = _reading(database, audit.head)
    finally:
        database.engine.dispose()
    print(f"{seq}:{hash_}")


def prompts_build(args):
    from callcenter.ivr.prompts import PromptPackError, build_pack

    started = time.monotonic()
    try:
        report = build_pack(
            args.dir,
            languages=tuple(dict.fromkeys(args.lang or ("zh", "en"))),
            force=args.force,
            instruments=args.instruments,
        )
    except PromptPackError as e:
        if e.report is not None:
            for warning in e.report.warnings:
                print(f"warning: {warning}", file=sys.stderr)
        exit_with(e.problems, CONFIG_ERROR)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for name in report.studio_outdated:
        print(f"warning: studio recording of {name} was made before its text last changed", file=sys.stderr)
    counts = ", ".join(f"{language} {count}" for language, count in report.languages.items())
    removed = f", {len(report.removed)} removed" if report.removed else ""
    print(
        f"prompts in {args.dir} ({counts}): {len(report.made)} made, {len(report.reused)} reused, "
        f"{len(report.studio)} kept as studio recordings{removed}; {time.monotonic() - started:.1f} s"
    )


def _new_pin(args, who):
    """
    A new phone PIN (4 to 12 digits), hashed: from standard input with
    --pin-stdin, else asked twice without echo; never from the command line.
    """
    from callcenter.passwords import hash_password

    if args.pin_stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        exit_with([f"no terminal to ask for the {who}'s PIN: give it on standard input with --pin-stdin"],
                  CONFIG_ERROR)
    else:
        pin = getpass.getpass(f"new {who} PIN (4 to 12 digits): ")
        if getpass.getpass("the same again: ") != pin:
            exit_with(["the two PINs differ"], CONFIG_ERROR)
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        exit_with([f"the {who}'s PIN must be 4 to 12 digits, keyed on the phone"], CONFIG_ERROR)
    return hash_password(pin)


def hash_pin(args):
    """A PIN's argon2 hash, for a configuration file (a conference room's moderator PIN)."""
    print(_new_pin(args, "moderator"))


def _ivr_change(args, work, *work_args):
    return _in_database(args, work, *work_args, refused=ValueError)


def ivr_category_add(args):
    from callcenter.ivr.bulletins import add_category

    _ivr_change(args, add_category, args.code, args.name_zh.strip(), args.name_en.strip())
    print(f"bulletin category {args.code}: {args.name_zh.strip()} / {args.name_en.strip()}")


def _may_publish_in(codes):
    if not codes:
        return "may publish in no category"
    return f"may publish in categor{'y' if len(codes) == 1 else 'ies'} {', '.join(codes)}"


def ivr_editor_add(args):
    from callcenter.ivr.bulletins import add_editor

    pin_hash = _new_pin(args, "editor")
    codes = _ivr_change(args, add_editor, args.id, args.name.strip(), pin_hash, args.categories)
    print(f"editor {args.id} ({args.name.strip()}) added, {_may_publish_in(codes)}")


def ivr_editor_allow(args):
    from callcenter.ivr.bulletins import allow_categories

    codes = _ivr_change(args, allow_categories, args.id, args.codes)
    print(f"editor {args.id} {_may_publish_in(codes)}")


def ivr_editor_revoke(args):
    from callcenter.ivr.bulletins import revoke_categories

    codes = _ivr_change(args, revoke_categories, args.id, args.codes)
    print(f"editor {args.id} {_may_publish_in(codes)}")


def _ivr_unlock(args, kind, key, who):
    from callcenter.ivr.bulletins import unlock

    if not _ivr_change(args, unlock, kind, key):
        exit_with([f"there is no {who} {key}"], CONFIG_ERROR)
    print(f"{who} {key}: wrong PINs cleared, unlocked")


def ivr_editor_unlock(args):
    _ivr_unlock(args, "editor", args.id, "editor")


def ivr_expert_add(args):
    from callcenter.ivr.bulletins import add_expert

    pin_hash = _new_pin(args, "expert")
    _ivr_change(args, add_expert, args.no, args.name_zh.strip(), args.name_en.strip(), pin_hash)
    print(f"expert mailbox {args.no} ({args.name_zh.strip()} / {args.name_en.strip()}) added")


def ivr_expert_unlock(args):
    _ivr_unlock(args, "expert", args.no, "expert mailbox")


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

    pin_hashing = commands.add_parser(
        "hash-pin", help="print a phone PIN's argon2 hash for the configuration (a conference moderator's PIN)"
    )
    pin_hashing.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    pin_hashing.set_defaults(run=hash_pin)

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

    instruments = commands.add_parser("instruments", help="the instrument master").add_subparsers(
        dest="instruments_command", required=True, metavar="ACTION"
    )
    instruments_loader = instruments.add_parser("load", help="add and update instruments from a CSV file")
    with_config(instruments_loader)
    instruments_loader.add_argument("file", help="CSV with the columns of etc/instruments.csv")
    instruments_loader.set_defaults(run=instruments_load)

    account = commands.add_parser("account", help="investors' accounts (audited)").add_subparsers(
        dest="account_command", required=True, metavar="ACTION"
    )

    def account_action(name, run, help, password=False):
        # No abbreviations: "--password 123456" must not pass for
        # --password-stdin and put a password on the command line.
        p = account.add_parser(name, help=help, allow_abbrev=False)
        with_config(p)
        if name != "open":
            p.add_argument("account", metavar="ACCOUNT", help="fund account number")
        if password:
            p.add_argument(
                "--password-stdin",
                action="store_true",
                help="read the new trading password from the first line of standard input "
                "instead of asking for it",
            )
        p.set_defaults(run=run)
        return p

    opening = account_action("open", account_open, "open a fund account for a new investor", password=True)
    opening.add_argument("--branch", required=True, help="branch code")
    opening.add_argument("--name-zh", required=True, help="name in Chinese")
    opening.add_argument("--name-en", help="name in English")
    opening.add_argument("--mobile", help="mobile number")
    opening.add_argument("--language", choices=("zh", "en"), default="zh", help="language of calls and messages")
    opening.add_argument("--sse", required=True, help="Shanghai shareholder account (a letter and 9 digits)")
    opening.add_argument("--szse", required=True, help="Shenzhen shareholder account (10 digits)")
    opening.add_argument("--account-no", help="fund account number [the branch's next]")
    for name, run, help in (
        ("deposit", account_deposit, "credit cash"),
        ("withdraw", account_withdraw, "debit available cash"),
    ):
        moving = account_action(name, run, help)
        moving.add_argument("amount", metavar="AMOUNT_CNY", help="e.g. 1000.50")
        moving.add_argument("--reference", help="bank transfer reference")
    account_action(
        "reset-password", account_reset_password, "set a new trading password and unlock", password=True
    )
    account_action("unlock", account_unlock, "clear failed logins and the lock")
    account_action(
        "callers", account_callers, "allow phone trading only from these numbers (none: from any)"
    ).add_argument("numbers", metavar="NUMBER", nargs="*")
    account_action("limit", account_limit, "limit phone orders per trading day").add_argument(
        "amount", metavar="AMOUNT_CNY|none"
    )
    account_action("show", account_show, "show an account")

    audit = commands.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    verifying = audit.add_parser("verify", help="check the hash chain; exit status 1 if broken")
    with_config(verifying)
    verifying.add_argument("--anchor", metavar="SEQ:HASH", help="a head noted earlier: the log must still reach it")
    verifying.set_defaults(run=audit_verify)
    heading = audit.add_parser("head", help="print the last row as SEQ:HASH, an anchor for verify")
    with_config(heading)
    heading.set_defaults(run=audit_head)

    prompts = commands.add_parser("prompts", help="the IVR's recorded prompts").add_subparsers(
        dest="prompts_command", required=True, metavar="ACTION"
    )
    building = prompts.add_parser(
        "build",
        help="synthesise the prompts that are missing or out of date with espeak-ng, "
        "and take in studio recordings from DIR/studio/",
    )
    building.add_argument("--dir", default="var/prompts", help="the prompt pack [var/prompts]")
    building.add_argument(
        "--lang", action="append", choices=("zh", "en"), help="a language to build, repeatable [zh and en]"
    )
    building.add_argument(
        "--instruments",
        metavar="CSV",
        help="the instrument master (etc/instruments.csv): each stock's name_zh and name_en as "
        "zh/ and en/stock-name-CODE; without it the stock names in the pack are left as they are",
    )
    building.add_argument(
        "--force", action="store_true", help="synthesise every prompt anew (studio recordings are still kept)"
    )
    building.set_defaults(run=prompts_build)

    ivr = commands.add_parser(
        "ivr", help="bulletin categories, editors and expert mailboxes of the voice information service"
    ).add_subparsers(dest="ivr_command", required=True, metavar="WHAT")

    def ivr_actions(what, help):
        return ivr.add_parser(what, help=help).add_subparsers(dest="ivr_action", required=True, metavar="ACTION")

    def ivr_action(actions, name, run, help, pin=False):
        # No abbreviations: "--pin 1234" must not pass for --pin-stdin.
        p = actions.add_parser(name, help=help, allow_abbrev=False)
        with_config(p)
        if pin:
            p.add_argument(
                "--pin-stdin",
                action="store_true",
                help="read the PIN from the first line of standard input instead of asking for it",
            )
        p.set_defaults(run=run)
        return p

    category = ivr_action(
        ivr_actions("category", "bulletin categories"), "add", ivr_category_add, "add or rename a bulletin category"
    )
    category.add_argument("code", metavar="CODE", help="the key callers press for it, 1 to 8")
    category.add_argument("name_zh", metavar="NAME_ZH")
    category.add_argument("name_en", metavar="NAME_EN")

    editor_actions = ivr_actions("editor", "editors, who record bulletins by phone or upload them over HTTP")
    editor = ivr_action(editor_actions, "add", ivr_editor_add, "add an editor", pin=True)
    editor.add_argument("id", metavar="ID", help="editor id, digits")
    editor.add_argument("name", metavar="NAME")
    editor.add_argument(
        "--category", dest="categories", action="append", metavar="CODE",
        help="a category the editor may publish in, repeatable [every category there is now]",
    )
    for name, run, help in (
        ("allow", ivr_editor_allow, "let an editor publish in these categories too"),
        ("revoke", ivr_editor_revoke, "no longer let an editor publish in (or withdraw from) these categories"),
    ):
        changing = ivr_action(editor_actions, name, run, help)
        changing.add_argument("id", metavar="ID", help="editor id")
        changing.add_argument("codes", metavar="CODE", nargs="+", help="category code")
    ivr_action(editor_actions, "unlock", ivr_editor_unlock, "clear an editor's wrong PINs and the lock").add_argument(
        "id", metavar="ID", help="editor id"
    )

    expert_actions = ivr_actions("expert", "experts and their mailboxes")
    expert = ivr_action(expert_actions, "add", ivr_expert_add, "add an expert and their mailbox", pin=True)
    expert.add_argument("no", metavar="NO", help="mailbox number, digits")
    expert.add_argument("name_zh", metavar="NAME_ZH")
    expert.add_argument("name_en", metavar="NAME_EN")
    ivr_action(expert_actions, "unlock", ivr_expert_unlock, "clear an expert's wrong PINs and the lock").add_argument(
        "no", metavar="NO", help="mailbox number"
    )
    from callcenter.radius.cli import register as register_internet

    register_internet(commands, with_config)
    from callcenter.notify.cli import register as register_notify

    register_notify(commands, with_config)
    return parser


def main(argv=None):
    parser = _parser()
    args, unrecognized = parser.parse_known_args(argv)
    if unrecognized:
        # Not repeated for account commands: a password typed on the command
        # line would land in a terminal's scrollback or a script's log.
        shown = "not shown" if args.command in ("account", "ivr", "internet") else " ".join(unrecognized)
        parser.error(f"unrecognized arguments: {shown}")
    if getattr(args, "config", "") is None:
        args.config = default_config_path()
    try:
        args.run(args)
    except ConfigError as e:
        exit_with(e.problems, CONFIG_ERROR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
