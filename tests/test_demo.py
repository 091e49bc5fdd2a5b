"""
The demo data set (L{callcenter.demo}) and the files under C{etc/} it loads.
"""

import csv
import decimal
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from callcenter.demo import load_demo, load_instruments
from callcenter.ivr.bulletins import editor_categories, revoke_categories
from callcenter.passwords import sip_ha1, verify_password
from callcenter.store import schema

ETC = Path(__file__).resolve().parent.parent / "etc"
DEMO_TABLES = (
    "branches", "customers", "fund_accounts", "shareholder_accounts", "sip_accounts", "agents", "positions",
    "bulletin_categories", "editors", "editor_categories", "experts", "internet_tiers", "internet_accounts",
    "notify_subscriptions",
)
ALL_TABLES = DEMO_TABLES + ("instruments",)

# The code prefix of each exchange and board, as the exchanges allocate them.
PREFIX_RULES = [
    (r"60[0135]", "SSE", "main"),
    (r"688", "SSE", "star"),
    (r"51", "SSE", "etf"),
    (r"00[0-3]", "SZSE", "main"),
    (r"30[01]", "SZSE", "chinext"),
    (r"159", "SZSE", "etf"),
]


def csv_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def fetch(database, table):
    """All rows of a table, as dicts in primary key order."""
    table = schema.metadata.tables[table]
    query = sa.select(table).order_by(*table.primary_key.columns)
    return database.transaction(lambda c: [row._asdict() for row in c.execute(query)])


def counts(database):
    return {table: len(fetch(database, table)) for table in ALL_TABLES}


def copy_etc(tmp_path):
    data_dir = tmp_path / "etc"
    shutil.copytree(ETC, data_dir)
    return data_dir


def test_load_inserts_every_row(database):
    instrument_count = len(csv_rows(ETC / "instruments.csv"))
    expected = {
        "branches": 3,
        "customers": 5,
        "fund_accounts": 5,
        "shareholder_accounts": 10,
        "sip_accounts": 5,
        "agents": 3,
        "instruments": instrument_count,
        "positions": len(csv_rows(ETC / "demo" / "positions.csv")),
        "bulletin_categories": 3,
        "editors": 2,
        "editor_categories": 6,
        "experts": 2,
        "internet_tiers": 2,
        "internet_accounts": 5,
        "notify_subscriptions": 5,
    }
    assert load_demo(database, ETC) == expected
    assert counts(database) == expected


def test_load_twice_changes_nothing(database):
    load_demo(database, ETC)
    before = {table: fetch(database, table) for table in ALL_TABLES}
    assert set(load_demo(database, ETC).values()) == {0}
    assert {table: fetch(database, table) for table in ALL_TABLES} == before


def test_trading_passwords_are_hashed(database):
    load_demo(database, ETC)
    accounts = {row["account_no"]: row for row in fetch(database, "fund_accounts")}
    for investor in csv_rows(ETC / "demo" / "investors.csv"):
        stored = accounts[investor["fund_account_no"]]["password_hash"]
        assert investor["trading_password"] not in stored
        assert verify_password(stored, investor["trading_password"])
        assert not verify_password(stored, "000000")


def test_agent_passwords_are_hashed(database):
    load_demo(database, ETC)
    stored = {row["agent_id"]: row for row in fetch(database, "agents")}
    for agent in csv_rows(ETC / "demo" / "agents.csv"):
        row = stored[agent["agent_id"]]
        assert agent["password"] not in row["password_hash"]
        assert verify_password(row["password_hash"], agent["password"])
        assert row["extension"] == (agent["extension"] or None)
        assert row["role"] == agent["role"]


def test_sip_ha1_for_the_realm(database):
    load_demo(database, ETC, realm="pbx.example")
    stored = {row["username"]: row for row in fetch(database, "sip_accounts")}
    for extension in csv_rows(ETC / "demo" / "extensions.csv"):
        username, password = extension["username"], extension["password"]
        row = stored[username]
        assert row["realm"] == "pbx.example"
        assert row["ha1_md5"] == sip_ha1(username, "pbx.example", password, "MD5")
        assert row["ha1_sha256"] == sip_ha1(username, "pbx.example", password, "SHA-256")


def test_investors_and_their_accounts(database):
    load_demo(database, ETC)
    accounts = {row["account_no"]: row for row in fetch(database, "fund_accounts")}
    customers = {row["id"]: row for row in fetch(database, "customers")}
    shareholders = fetch(database, "shareholder_accounts")
    assert accounts["10010001"]["cash_available_fen"] == 50000000
    assert accounts["10010003"]["cash_available_fen"] == 8800050
    for investor in csv_rows(ETC / "demo" / "investors.csv"):
        account = accounts[investor["fund_account_no"]]
        assert account["cash_frozen_fen"] == 0
        customer = customers[account["customer_id"]]
        assert customer["name_zh"] == investor["name_zh"]
        assert customer["branch_code"] == investor["branch_code"]
        assert customer["language"] == investor["language"]
        assert {
            (row["exchange"], row["account_no"])
            for row in shareholders
            if row["fund_account_no"] == investor["fund_account_no"]
        } == {("SSE", investor["sse_account"]), ("SZSE", investor["szse_account"])}


def test_prices_in_fen_exactly(database, tmp_path):
    # 4.35 and 1.15 are the classic binary floating point traps (x 100 gives 434.99...).
    path = tmp_path / "instruments.csv"
    path.write_text(
        "code,exchange,name_zh,name_en,board,prev_close,is_st,lot_size\n"
        "600000,SSE,浦发银行,SPD Bank,main,4.35,false,100\n"
        "159915,SZSE,创业板ETF,ChiNext ETF,etf,1.15,false,100\n"
        "688981,SSE,中芯国际,SMIC,star,90,true,200\n",
        encoding="utf-8",
    )
    assert database.transaction(load_instruments, str(path)) == {"inserted": 3, "updated": 0}
    prices = {row["code"]: row["prev_close_fen"] for row in fetch(database, "instruments")}
    assert prices == {"600000": 435, "159915": 115, "688981": 9000}
    assert [row["is_st"] for row in fetch(database, "instruments")] == [False, False, True]


def test_load_instruments_updates_changed_rows(database, tmp_path):
    load_demo(database, ETC)
    st_before = {row["code"] for row in fetch(database, "instruments") if row["is_st"]}
    path = tmp_path / "instruments.csv"
    text = (ETC / "instruments.csv").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("600000,"))
    path.write_text(text.replace(line, line.replace(",false,", ",true,")), encoding="utf-8")
    assert database.transaction(load_instruments, str(path)) == {"inserted": 0, "updated": 1}
    st_after = {row["code"] for row in fetch(database, "instruments") if row["is_st"]}
    assert st_after - st_before == {"600000"}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("board", "foo", "board 'foo' is not one of main, chinext, star, etf"),
        ("prev_close", "12.345", "prev_close 12.345 has more than 2 decimals"),
        ("exchange", "HKEX", "exchange 'HKEX' is not one of SSE, SZSE"),
        ("code", "60000", "code '60000' is not 6 digits"),
    ],
)
def test_bad_instruments_load_nothing(database, tmp_path, field, value, message):
    data_dir = copy_etc(tmp_path)
    path = data_dir / "instruments.csv"
    rows = csv_rows(path)
    rows[5][field] = value  # Line 7: the header is line 1.
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError) as raised:
        load_demo(database, data_dir)
    assert str(raised.value) == f"{path} line 7: {message}"
    assert set(counts(database).values()) == {0}


def test_bad_demo_file_names_its_line(database, tmp_path):
    data_dir = copy_etc(tmp_path)
    path = data_dir / "demo" / "investors.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace(",0201,", ",0999,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path} line 4: branch_code '0999'")):
        load_demo(database, data_dir)
    assert set(counts(database).values()) == {0}


def test_instrument_codes_match_exchange_and_board():
    seen = set()
    for row in csv_rows(ETC / "instruments.csv"):
        rules = [rule for rule in PREFIX_RULES if re.match(rule[0], row["code"])]
        assert [(exchange, board) for _, exchange, board in rules] == [
            (row["exchange"], row["board"])
        ], row["code"]
        assert row["lot_size"] == ("200" if row["board"] == "star" else "100"), row["code"]
        assert decimal.Decimal(row["prev_close"]).as_tuple().exponent == -2, row["code"]
        assert (row["code"], row["exchange"]) not in seen
        seen.add((row["code"], row["exchange"]))
    assert len(seen) >= 50


def test_editors_and_experts_have_their_pins_hashed(database):
    load_demo(database, ETC)
    for table, key, path in (("editors", "editor_id", "editors.csv"), ("experts", "expert_no", "experts.csv")):
        stored = {row[key]: row for row in fetch(database, table)}
        for person in csv_rows(ETC / "demo" / path):
            pin_hash = stored[person[key]]["pin_hash"]
            assert person["pin"] not in pin_hash
            assert verify_password(pin_hash, person["pin"])
    categories = fetch(database, "bulletin_categories")
    assert [(row["code"], row["sort"]) for row in categories] == [("1", 1), ("2", 2), ("3", 3)]


@pytest.mark.parametrize(
    "path, line, problem",
    [
        ("bulletin_categories.csv", "9,其他,Other", "code '9' is not one digit from 1 to 8"),
        ("editors.csv", "70x1,某编辑,12345678,", "editor_id '70x1' is not 1 to 16 digits"),
        ("editors.csv", "7003,某编辑,12345678,14", "categories '4' is not one of 1, 2, 3"),
        ("experts.csv", "603,某专家,Someone,12", "pin is not 6 to 12 digits"),
    ],
)
def test_voice_information_mistakes_are_named(database, tmp_path, path, line, problem):
    data_dir = copy_etc(tmp_path)
    with open(data_dir / "demo" / path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    with pytest.raises(ValueError, match=problem):
        load_demo(database, data_dir)
    assert fetch(database, "editors") == []


def test_editors_publish_in_the_categories_listed_or_every_one(database, tmp_path):
    data_dir = copy_etc(tmp_path)
    with open(data_dir / "demo" / "editors.csv", "a", encoding="utf-8") as f:
        f.write("7003,某编辑,70037003,31\n7004,某编辑,70047004,\n")
    load_demo(database, data_dir)
    assert database.transaction(editor_categories, "7001") == ["1", "2", "3"]
    assert database.transaction(editor_categories, "7003") == ["1", "3"]
    assert database.transaction(editor_categories, "7004") == ["1", "2", "3"]


def test_loading_again_keeps_the_categories_an_administrator_changed(database):
    load_demo(database, ETC)
    database.transaction(revoke_categories, "7002", ["2", "3"])
    assert load_demo(database, ETC)["editor_categories"] == 0
    assert database.transaction(editor_categories, "7002") == ["1"]


def test_internet_accounts_have_their_passwords_hashed_and_sealed_for_chap_with_a_key(database):
    from callcenter.radius.chap import ChapSecrets

    secrets = ChapSecrets(bytes(range(32)))
    load_demo(database, ETC, chap_secrets=secrets)
    stored = {row["username"]: row for row in fetch(database, "internet_accounts")}
    for account in csv_rows(ETC / "demo" / "internet_accounts.csv"):
        row = stored[account["username"]]
        assert account["password"] not in row["password_hash"]
        assert verify_password(row["password_hash"], account["password"])
        assert (row["fund_account_no"], row["tier"]) == (account["fund_account_no"], account["tier"])
        if account["chap"] == "yes":
            assert secrets.open(account["username"], row["chap_secret"]) == account["password"].encode()
        else:
            assert row["chap_secret"] is None
    assert stored["davidchen"]["language"] == "en"
    tiers = {row["name"]: row for row in fetch(database, "internet_tiers")}
    assert (tiers["basic"]["monthly_seconds"], tiers["vip"]["monthly_seconds"]) == (30 * 3600, None)


def test_internet_accounts_without_a_chap_key_are_pap_only(database):
    load_demo(database, ETC)
    assert {row["chap_secret"] for row in fetch(database, "internet_accounts")} == {None}


@pytest.mark.parametrize(
    "path, line, problem",
    [
        ("internet_tiers.csv", "gold,lots,,1", "monthly_hours 'lots' is not whole hours or unlimited"),
        ("internet_accounts.csv", "someone,10019999,surf99999,basic,no", "fund_account_no '10019999' is not one of"),
        ("internet_accounts.csv", "again,10010001,surf99999,basic,no", "fund account 10010001 has an internet account"),
        ("internet_accounts.csv", "gold,10010001,surf99999,gold,no", "tier 'gold' is not one of basic, vip"),
        ("notify_subscriptions.csv", "10010003,sms,12ab,fill,zh,", "'12ab' is not a valid sms address"),
        ("notify_subscriptions.csv", "10010003,email,a@b.example,fills,zh,", "events must be some of"),
        ("notify_subscriptions.csv", "10019999,sms,+8613800138000,fill,zh,", "fund_account_no '10019999' is not one of"),
    ],
)
def test_internet_access_mistakes_are_named(database, tmp_path, path, line, problem):
    data_dir = copy_etc(tmp_path)
    with open(data_dir / "demo" / path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    with pytest.raises(ValueError, match=problem):
        load_demo(database, data_dir)
    assert fetch(database, "internet_accounts") == []
