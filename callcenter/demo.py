"""
The demo data set: the A-share instrument master (C{etc/instruments.csv}) and
fictitious branches, investors and their holdings, SIP extensions, agents,
the voice information service's categories, editors and experts, and
investors' internet access tiers and accounts (C{etc/demo/}).

Loading can be repeated, after editing the files or on a database in use:
rows whose key is already present are left as they are, so that secrets
changed since, and their hashes, survive.  Instruments are the exception and
are updated from the file, since names, prices and ST flags change.

Everything here blocks: C{callcenter demo load} calls it directly.
"""

import csv
import decimal
import os
import re

import sqlalchemy as sa

from callcenter.ivr.bulletins import add_editor
from callcenter.passwords import hash_password, sip_ha1
from callcenter.radius.accounts import open_account
from callcenter.store.schema import agents, branches, bulletin_categories, customers, editors, experts
from callcenter.store.schema import fund_accounts, instruments, positions, shareholder_accounts, sip_accounts
from callcenter.store.schema import internet_accounts, internet_tiers

INSTRUMENT_HEADER = "code,exchange,name_zh,name_en,board,prev_close,is_st,lot_size"
BRANCH_HEADER = "code,name_zh,name_en,city,phone"
INVESTOR_HEADER = (
    "fund_account_no,branch_code,name_zh,name_en,mobile,language,"
    "trading_password,cash_cny,sse_account,szse_account"
)
EXTENSION_HEADER = "username,display_name,password"
AGENT_HEADER = "agent_id,name,password,extension,role"
POSITION_HEADER = "fund_account_no,code,exchange,quantity,cost_cny"
CATEGORY_HEADER = "code,name_zh,name_en"
EDITOR_HEADER = "editor_id,name,pin,categories"
EXPERT_HEADER = "expert_no,name_zh,name_en,pin"
INTERNET_TIER_HEADER = "name,monthly_hours,idle_timeout,simultaneous_use"
NOTIFY_SUBSCRIPTION_HEADER = "fund_account_no,channel,address,events,language,quiet_hours"
INTERNET_ACCOUNT_HEADER = "username,fund_account_no,password,tier,chap"
# Holdings in the demo are from before any trading day the server will see,
# so they are sellable at once (T+1 counts from this day).
DEMO_HOLDING_DAY = "2000-01-03"

# What the CHECK constraints of migration 0001 allow.
EXCHANGES = ("SSE", "SZSE")
BOARDS = ("main", "chinext", "star", "etf")
ROLES = ("agent", "supervisor", "admin")


def _read(path, header, *key):
    """
    The data lines of a CSV file as C{(where, row)}: C{where} is the
    C{"file line N"} that error messages start with, C{row} maps each column
    to its stripped text.  No two lines may have the same C{key} columns.
    """
    # utf-8-sig: spreadsheets save Chinese CSV with a byte order mark.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if ",".join(reader.fieldnames or ()) != header:
            raise ValueError(f"{path} line 1: the header must be {header}")
        lines, seen = [], {}
        for row in reader:
            where = f"{path} line {reader.line_num}"
            # DictReader puts surplus fields under None and fills missing ones with None.
            if None in row or None in row.values():
                raise ValueError(f"{where}: expected the {header.count(',') + 1} fields {header}")
            row = {name: value.strip() for name, value in row.items()}
            identity = ",".join(row[name] for name in key)
            if identity in seen:
                raise ValueError(f"{where}: {identity} is already on line {seen[identity]}")
            seen[identity] = reader.line_num
            lines.append((where, row))
    return lines


def _fitted(where, table, values):
    """
    Check text against its column, since SQLite ignores declared lengths and
    a file loading there would then fail on PostgreSQL.  Empty text in an
    optional column becomes NULL.
    """
    fitted = dict(values)
    for name, value in values.items():
        column = table.c[name]
        if not isinstance(value, str):
            continue
        if not value:
            if not column.nullable:
                raise ValueError(f"{where}: {name} is empty")
            fitted[name] = None
        elif len(value) > column.type.length:
            raise ValueError(f"{where}: {name} is longer than {column.type.length} characters")
    return fitted


def _fen(where, name, text):
    """CNY as written (C{"500000.00"}) to integer fen, exactly."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise ValueError(f"{where}: {name} {text!r} is not an amount in CNY such as 12.34")
    amount = decimal.Decimal(text)
    if amount.as_tuple().exponent < -2:
        raise ValueError(f"{where}: {name} {text} has more than 2 decimals")
    return int(amount * 100)


def _one_of(where, name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{where}: {name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _matching(where, name, value, pattern, description, secret=False):
    if not re.fullmatch(pattern, value):
        shown = "" if secret else f" {value!r}"
        raise ValueError(f"{where}: {name}{shown} is not {description}")
    return value


def _instrument(where, row):
    prev_close_fen = _fen(where, "prev_close", row["prev_close"])
    if prev_close_fen == 0:
        raise ValueError(f"{where}: prev_close must be more than 0")
    lot_size = _matching(where, "lot_size", row["lot_size"], "[1-9][0-9]*", "a positive integer")
    values = {
        "code": _matching(where, "code", row["code"], "[0-9]{6}", "6 digits"),
        "exchange": _one_of(where, "exchange", row["exchange"], EXCHANGES),
        "name_zh": row["name_zh"],
        "name_en": row["name_en"],
        "board": _one_of(where, "board", row["board"], BOARDS),
        "prev_close_fen": prev_close_fen,
        "is_st": _one_of(where, "is_st", row["is_st"], ("true", "false")) == "true",
        "lot_size": int(lot_size),
    }
    return _fitted(where, instruments, values)


def load_instruments(connection, path):
    """
    Bring the instrument master up to date with the CSV file at C{path}.
    Instruments missing from the file are kept: orders and positions may
    still name them.

    @return: C{{"inserted": n, "updated": n}}; unchanged rows are not counted.
    @raise ValueError: a line is invalid (nothing is written).
    """
    rows = [_instrument(*line) for line in _read(path, INSTRUMENT_HEADER, "code", "exchange")]
    existing = {(r.code, r.exchange): r._asdict() for r in connection.execute(instruments.select())}
    new = [row for row in rows if (row["code"], row["exchange"]) not in existing]
    changed = [row for row in rows if existing.get((row["code"], row["exchange"]), row) != row]
    if new:
        connection.execute(instruments.insert(), new)
    for row in changed:
        connection.execute(
            instruments.update()
            .where(instruments.c.code == row["code"], instruments.c.exchange == row["exchange"])
            .values(row)
        )
    return {"inserted": len(new), "updated": len(changed)}


def _read_investors(path, branch_codes):
    investors = []
    for where, row in _read(path, INVESTOR_HEADER, "fund_account_no"):
        account_no = row["fund_account_no"]
        _matching(where, "fund_account_no", account_no, "[0-9]{1,20}", "1 to 20 digits")
        _one_of(where, "branch_code", row["branch_code"], branch_codes)
        _one_of(where, "language", row["language"], ("zh", "en"))
        customer = {k: row[k] for k in ("branch_code", "name_zh", "name_en", "mobile", "language")}
        sse = row["sse_account"]
        _matching(where, "sse_account", sse, "[A-Z][0-9]{9}", "a letter and 9 digits")
        szse = _matching(where, "szse_account", row["szse_account"], "[0-9]{10}", "10 digits")
        # Six digits, as investors key it in on a telephone keypad.
        password = row["trading_password"]
        _matching(where, "trading_password", password, "[0-9]{6}", "6 digits", secret=True)
        investors.append({
            "customer": _fitted(where, customers, customer),
            "account_no": account_no,
            "cash_fen": _fen(where, "cash_cny", row["cash_cny"]),
            "password": password,
            "shareholder_accounts": [
                {"account_no": sse, "fund_account_no": account_no, "exchange": "SSE"},
                {"account_no": szse, "fund_account_no": account_no, "exchange": "SZSE"},
            ],
        })
    return investors


def _read_extensions(path, realm):
    extensions = []
    for where, row in _read(path, EXTENSION_HEADER, "username"):
        username = row["username"]
        password = _matching(where, "password", row["password"], ".+", "set", secret=True)
        values = {"username": username, "display_name": row["display_name"], "realm": realm}
        values["ha1_md5"] = sip_ha1(username, realm, password, "MD5")
        values["ha1_sha256"] = sip_ha1(username, realm, password, "SHA-256")
        extensions.append(_fitted(where, sip_accounts, values))
    return extensions


def _read_agents(path, usernames):
    rows = []
    for where, row in _read(path, AGENT_HEADER, "agent_id"):
        if row["extension"]:
            _one_of(where, "extension", row["extension"], usernames)
        _one_of(where, "role", row["role"], ROLES)
        values = {name: row[name] for name in ("agent_id", "name", "extension", "role")}
        password = _matching(where, "password", row["password"], ".+", "set", secret=True)
        rows.append({**_fitted(where, agents, values), "password": password})
    return rows


def _read_positions(path, account_nos, instrument_keys):
    rows = []
    for where, row in _read(path, POSITION_HEADER, "fund_account_no", "code", "exchange"):
        _one_of(where, "fund_account_no", row["fund_account_no"], account_nos)
        if (row["code"], row["exchange"]) not in instrument_keys:
            raise ValueError(f"{where}: {row['code']} {row['exchange']} is not in instruments.csv")
        quantity = _matching(where, "quantity", row["quantity"], "[1-9][0-9]*", "a positive integer")
        rows.append({
            "fund_account_no": row["fund_account_no"],
            "code": row["code"],
            "exchange": row["exchange"],
            "quantity": int(quantity),
            "cost_fen": _fen(where, "cost_cny", row["cost_cny"]),
            "trading_day": DEMO_HOLDING_DAY,
        })
    return rows


def _read_categories(path):
    rows = []
    for where, row in _read(path, CATEGORY_HEADER, "code"):
        _matching(where, "code", row["code"], "[1-8]", "one digit from 1 to 8 (its key on the phone)")
        rows.append({**_fitted(where, bulletin_categories, row), "sort": int(row["code"])})
    return rows


def _read_pin_holders(path, header, table, key, category_codes=()):
    """
    Editors or experts: an id keyed on the phone and a PIN (hashed when
    inserted); an editor's C{categories}, the keys of those they may
    publish in run together ("13"), every one of C{category_codes} if empty.
    """
    rows = []
    for where, row in _read(path, header, key):
        length = table.c[key].type.length
        _matching(where, key, row[key], f"[0-9]{{1,{length}}}", f"1 to {length} digits")
        pin = _matching(where, "pin", row.pop("pin"), "[0-9]{6,12}", "6 to 12 digits", secret=True)
        allowed = row.pop("categories", None)
        values = {**_fitted(where, table, row), "pin": pin}
        if allowed is not None:
            for code in allowed:
                _one_of(where, "categories", code, category_codes)
            values["categories"] = list(dict.fromkeys(allowed)) or list(category_codes)
        rows.append(values)
    return rows


def _with_pin_hash(row):
    values = dict(row)
    values["pin_hash"] = hash_password(values.pop("pin"))
    return values


def _insert_editors(connection, rows):
    """
    The editors not there yet, with their categories; those there keep the
    categories they have (an administrator may have changed them since).
    """
    absent = _absent(connection, editors.c.editor_id, [row["editor_id"] for row in rows])
    allowed = 0
    for row in rows:
        if row["editor_id"] in absent:
            values = _with_pin_hash(row)
            allowed += len(add_editor(connection, values["editor_id"], values["name"], values["pin_hash"],
                                      values["categories"]))
    return len(absent), allowed


def _read_internet_tiers(path):
    rows = []
    for where, row in _read(path, INTERNET_TIER_HEADER, "name"):
        _matching(where, "name", row["name"], "[a-z0-9][a-z0-9_-]{0,15}",
                  "1 to 16 lower-case letters, digits, - and _")
        hours = row["monthly_hours"]
        if hours != "unlimited":
            _matching(where, "monthly_hours", hours, "[0-9]+", "whole hours or unlimited")
        idle = row["idle_timeout"]
        if idle:
            _matching(where, "idle_timeout", idle, "[1-9][0-9]*", "seconds, or empty for none")
        simultaneous = _matching(
            where, "simultaneous_use", row["simultaneous_use"], "[1-9][0-9]*", "a positive integer"
        )
        rows.append({
            "name": row["name"],
            "monthly_seconds": None if hours == "unlimited" else int(hours) * 3600,
            "idle_timeout": int(idle) if idle else None,
            "simultaneous_use": int(simultaneous),
        })
    return rows


def _read_internet_accounts(path, account_nos, tier_names):
    rows, fund_accounts_seen = [], set()
    for where, row in _read(path, INTERNET_ACCOUNT_HEADER, "username"):
        _matching(where, "username", row["username"], "[A-Za-z0-9][A-Za-z0-9._@-]{0,63}",
                  "1 to 64 letters, digits, '.', '_', '@' and '-'")
        _one_of(where, "fund_account_no", row["fund_account_no"], account_nos)
        _one_of(where, "tier", row["tier"], tier_names)
        _one_of(where, "chap", row["chap"], ("yes", "no"))
        if row["fund_account_no"] in fund_accounts_seen:
            raise ValueError(f"{where}: fund account {row['fund_account_no']} has an internet account already")
        fund_accounts_seen.add(row["fund_account_no"])
        _matching(where, "password", row["password"], "[^\x00-\x1f\x7f]{6,64}", "6 to 64 characters", secret=True)
        rows.append(row)
    return rows


def _insert_internet_accounts(connection, rows, chap_secrets):
    """
    The internet accounts not there yet, for fund accounts without one:
    the password hashed, and sealed for CHAP where the file says so and
    there is a key (without, they log in with PAP only).
    """
    absent = _absent(connection, internet_accounts.c.username, [row["username"] for row in rows])
    served = set(connection.scalars(sa.select(internet_accounts.c.fund_account_no)))
    opened = 0
    for row in rows:
        if row["username"] not in absent or row["fund_account_no"] in served:
            continue
        sealed = None
        if chap_secrets is not None and row["chap"] == "yes":
            sealed = chap_secrets.seal(row["username"], row["password"])
        open_account(
            connection, row["fund_account_no"], row["username"], hash_password(row["password"]), row["tier"], sealed
        )
        opened += 1
    return opened


def _read_notify_subscriptions(path, account_nos):
    from callcenter.notify.subscriptions import SubscriptionError, parse_quiet_hours, validate

    rows = []
    for where, row in _read(path, NOTIFY_SUBSCRIPTION_HEADER, "fund_account_no", "channel", "address"):
        _one_of(where, "fund_account_no", row["fund_account_no"], account_nos)
        try:
            validate(row["channel"], row["address"], row["events"].split(), row["language"])
            parse_quiet_hours(row["quiet_hours"])
        except SubscriptionError as e:
            raise ValueError(f"{where}: {e}") from None
        rows.append(row)
    return rows


def _insert_notify_subscriptions(connection, rows):
    from callcenter.notify.subscriptions import subscribe
    from callcenter.store.schema import notify_subscriptions

    present = set(connection.execute(sa.select(
        notify_subscriptions.c.fund_account_no, notify_subscriptions.c.channel, notify_subscriptions.c.address)))
    added = 0
    for row in rows:
        if (row["fund_account_no"], row["channel"], row["address"]) in present:
            continue
        subscribe(connection, row["fund_account_no"], row["channel"], row["address"], row["events"].split(),
                  row["language"], row["quiet_hours"] or None)
        added += 1
    return added


def _insert_absent_positions(connection, rows):
    held = set(connection.execute(sa.select(positions.c.fund_account_no, positions.c.code, positions.c.exchange)))
    rows = [row for row in rows if (row["fund_account_no"], row["code"], row["exchange"]) not in held]
    if rows:
        connection.execute(positions.insert(), rows)
    return len(rows)


def _with_hash(row):
    values = dict(row)
    values["password_hash"] = hash_password(values.pop("password"))
    return values


def _absent(connection, column, keys):
    """Those of C{keys} not yet in C{column}."""
    return set(keys) - set(connection.scalars(sa.select(column).where(column.in_(keys))))


def _insert_absent(connection, table, rows, complete=dict):
    """
    Insert the rows whose key is not in C{table} yet, each passed through
    C{complete}: hashing is slow on purpose, so it is done only for these.
    """
    key = table.primary_key.columns[0].name
    absent = _absent(connection, table.c[key], [row[key] for row in rows])
    rows = [complete(row) for row in rows if row[key] in absent]
    if rows:
        connection.execute(table.insert(), rows)
    return len(rows)


def _insert_investors(connection, investors):
    absent = _absent(connection, fund_accounts.c.account_no, [i["account_no"] for i in investors])
    investors = [investor for investor in investors if investor["account_no"] in absent]
    for investor in investors:
        inserted = connection.execute(customers.insert().values(investor["customer"]))
        connection.execute(
            fund_accounts.insert().values(
                account_no=investor["account_no"],
                customer_id=inserted.inserted_primary_key[0],
                cash_available_fen=investor["cash_fen"],
                password_hash=hash_password(investor["password"]),
            )
        )
        connection.execute(shareholder_accounts.insert(), investor["shareholder_accounts"])
    return len(investors)


def load_demo(database, data_dir="etc", realm="callcenter", chap_secrets=None):
    """
    Load C{instruments.csv} and C{demo/*.csv} under C{data_dir} into
    C{database}, in one transaction.

    @param realm: the SIP digest realm the extensions' HA1 are computed for.
    @param chap_secrets: the L{callcenter.radius.chap.ChapSecrets} sealing
        the CHAP passwords of new internet accounts; None: PAP only.
    @return: rows written per table: inserted, or for instruments inserted or
        changed.  Loading the same files again returns only zeros.
    @raise ValueError: a line is invalid, naming file and line; nothing is
        written.
    @raise OSError: a file cannot be read.
    """
    demo = os.path.join(data_dir, "demo")
    branch_lines = _read(os.path.join(demo, "branches.csv"), BRANCH_HEADER, "code")
    branch_rows = [_fitted(where, branches, row) for where, row in branch_lines]
    branch_codes = [row["code"] for row in branch_rows]
    investors = _read_investors(os.path.join(demo, "investors.csv"), branch_codes)
    extensions = _read_extensions(os.path.join(demo, "extensions.csv"), realm)
    usernames = [row["username"] for row in extensions]
    agent_rows = _read_agents(os.path.join(demo, "agents.csv"), usernames)
    instrument_path = os.path.join(data_dir, "instruments.csv")
    instrument_keys = {(row["code"], row["exchange"]) for _, row in _read(instrument_path, INSTRUMENT_HEADER, "code", "exchange")}
    position_rows = _read_positions(
        os.path.join(demo, "positions.csv"), [i["account_no"] for i in investors], instrument_keys
    )
    category_rows = _read_categories(os.path.join(demo, "bulletin_categories.csv"))
    editor_rows = _read_pin_holders(
        os.path.join(demo, "editors.csv"), EDITOR_HEADER, editors, "editor_id", [row["code"] for row in category_rows]
    )
    expert_rows = _read_pin_holders(os.path.join(demo, "experts.csv"), EXPERT_HEADER, experts, "expert_no")
    internet_tier_rows = _read_internet_tiers(os.path.join(demo, "internet_tiers.csv"))
    internet_account_rows = _read_internet_accounts(
        os.path.join(demo, "internet_accounts.csv"), [i["account_no"] for i in investors],
        [row["name"] for row in internet_tier_rows],
    )
    subscription_rows = _read_notify_subscriptions(
        os.path.join(demo, "notify_subscriptions.csv"), [i["account_no"] for i in investors]
    )

    def work(connection):
        counts = {"branches": _insert_absent(connection, branches, branch_rows)}
        investors_inserted = _insert_investors(connection, investors)
        counts["customers"] = counts["fund_accounts"] = investors_inserted
        counts["shareholder_accounts"] = 2 * investors_inserted
        counts["sip_accounts"] = _insert_absent(connection, sip_accounts, extensions)
        counts["agents"] = _insert_absent(connection, agents, agent_rows, _with_hash)
        written = load_instruments(connection, instrument_path)
        counts["instruments"] = written["inserted"] + written["updated"]
        counts["positions"] = _insert_absent_positions(connection, position_rows)
        counts["bulletin_categories"] = _insert_absent(connection, bulletin_categories, category_rows)
        counts["editors"], counts["editor_categories"] = _insert_editors(connection, editor_rows)
        counts["experts"] = _insert_absent(connection, experts, expert_rows, _with_pin_hash)
        counts["internet_tiers"] = _insert_absent(connection, internet_tiers, internet_tier_rows)
        counts["internet_accounts"] = _insert_internet_accounts(connection, internet_account_rows, chap_secrets)
        counts["notify_subscriptions"] = _insert_notify_subscriptions(connection, subscription_rows)
        return counts

    return database.transaction(work)
