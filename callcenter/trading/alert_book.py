"""Investors' price alert rules in the database (the index that evaluates them is L{alerts})."""

import sqlalchemy as sa

from callcenter.store.schema import alert_rules
from callcenter.trading import audit
from callcenter.trading.reasons import TradingRefused


def add_alert_rule(connection, fund_account_no, instrument, kind, threshold, rearm, origin, now):
    """Store a rule; returns its row."""
    inserted = connection.execute(
        alert_rules.insert().values(
            fund_account_no=fund_account_no,
            code=instrument.code,
            exchange=instrument.exchange,
            kind=kind,
            threshold=threshold,
            rearm=rearm,
            created_at=now,
        )
    )
    rule_id = inserted.inserted_primary_key[0]
    audit.append(connection, origin, "add_alert", "ok", fund_account_no,
                 {"rule_id": rule_id, "code": instrument.code, "kind": kind, "threshold": threshold,
                  "rearm": rearm}, now=now)
    return dict(connection.execute(sa.select(alert_rules).where(alert_rules.c.rule_id == rule_id)).mappings().one())


def remove_alert_rule(connection, fund_account_no, rule_id, origin, now):
    """Delete one of the investor's rules; L{TradingRefused} if it is not theirs."""
    deleted = connection.execute(
        alert_rules.delete().where(alert_rules.c.rule_id == rule_id, alert_rules.c.fund_account_no == fund_account_no)
    )
    if deleted.rowcount != 1:
        raise TradingRefused("alert_rule_not_found")
    audit.append(connection, origin, "remove_alert", "ok", fund_account_no, {"rule_id": rule_id}, now=now)


def load_active_rules(connection):
    rows = connection.execute(sa.select(alert_rules).where(alert_rules.c.active.is_(True))).mappings()
    return [dict(row) for row in rows]


def record_fired(connection, fired_ids, once_ids, now):
    """Remember when rules fired; rules that fire once are switched off."""
    connection.execute(alert_rules.update().where(alert_rules.c.rule_id.in_(fired_ids)).values(last_fired_at=now))
    if once_ids:
        connection.execute(alert_rules.update().where(alert_rules.c.rule_id.in_(once_ids)).values(active=False))


def rules_of(connection, fund_account_no):
    rows = connection.execute(
        sa.select(alert_rules).where(alert_rules.c.fund_account_no == fund_account_no).order_by(alert_rules.c.rule_id)
    ).mappings()
    return [dict(row) for row in rows]
