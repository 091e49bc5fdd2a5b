"""
`callcenter notify ...`: investors' subscriptions and the outbox's
messages, from the command line (changes audited, as the other account
commands are).  A dead letter retried here is taken up by the running
server's next sweep of the outbox.
"""

import datetime

from callcenter.tap import CONFIG_ERROR, exit_with

_CST = datetime.timezone(datetime.timedelta(hours=8), "CST")


def _cli():
    # callcenter.cli imports this module to register the commands.
    from callcenter import cli

    return cli


def _local(moment):
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return f"{moment.astimezone(_CST):%Y-%m-%d %H:%M:%S}"


def _audited(args, action, fund_account_no, work, *work_args):
    from callcenter.notify.subscriptions import SubscriptionError
    from callcenter.trading import audit

    cli = _cli()
    origin = cli._staff_origin()

    def audited(connection):
        result = work(connection, *work_args)
        if result:  # nothing changed, nothing to audit
            audit.append(connection, origin, action, "ok", fund_account_no, {"args": [str(a) for a in work_args]})
        return result

    database = cli._opened(args)
    try:
        try:
            return cli._run(database, audited)
        except SubscriptionError as e:
            exit_with([str(e)], CONFIG_ERROR)
    finally:
        database.close()


def _subscription_line(s):
    quiet = s.as_dict()["quiet_hours"] or "none"
    return (f"#{s.id} {s.channel} {s.address}: {', '.join(sorted(s.events))} in {s.language}, "
            f"quiet hours {quiet}{'' if s.enabled else ' (disabled)'}")


def notify_subscribe(args):
    from callcenter.notify.subscriptions import subscribe

    added = _audited(
        args, "notify_subscribe", args.fund_account, subscribe, args.fund_account, args.channel, args.address,
        args.events.split(","), args.language, args.quiet,
    )
    print(f"fund account {added.fund_account_no}: {_subscription_line(added)}")


def notify_unsubscribe(args):
    from callcenter.notify.subscriptions import unsubscribe

    if not _audited(args, "notify_unsubscribe", args.fund_account, unsubscribe, args.fund_account, args.channel,
                    args.address):
        exit_with([f"fund account {args.fund_account} has no {args.channel} subscription for {args.address}"],
                  CONFIG_ERROR)
    print(f"fund account {args.fund_account}: {args.channel} {args.address} unsubscribed")


def _read(args, work, *work_args):
    cli = _cli()
    database = cli._opened(args)
    try:
        return cli._run(database, work, *work_args)
    finally:
        database.close()


def notify_subscriptions(args):
    from callcenter.notify.subscriptions import subscriptions_of

    found = _read(args, subscriptions_of, args.fund_account)
    for s in found:
        print(_subscription_line(s))
    if not found:
        print(f"fund account {args.fund_account}: no subscriptions")


def _message_line(row):
    subject = f" \"{row['subject']}\"" if row["subject"] else ""
    return (f"#{row['message_id']} {_local(row['created_at'])} {row['event']} {row['channel']} {row['address']}"
            f"{subject}: {row['state']}, {row['attempts']} attempt{'' if row['attempts'] == 1 else 's'}"
            + (f" ({row['last_error']})" if row["last_error"] else ""))


def notify_messages(args):
    from callcenter.notify.records import recent_messages

    rows = _read(args, recent_messages, args.account, args.state, args.limit)
    for row in rows:
        print(_message_line(row))
    print(f"{len(rows)} message{'' if len(rows) == 1 else 's'} (newest first, times in Beijing time)")


def notify_show(args):
    from callcenter.notify.records import message_with_history

    found = _read(args, message_with_history, args.message_id)
    if found is None:
        exit_with([f"no message #{args.message_id}"], CONFIG_ERROR)
    print(_message_line(found))
    print(f"idempotency key {found['idempotency_key']}; not before {_local(found['not_before'])}"
          + (f"; provider ids {found['provider_ids']}" if found["provider_ids"] else ""))
    for h in found["history"]:
        print(f"  {_local(h['at'])} {h['state']}" + (f": {h['detail']}" if h["detail"] else ""))
    print("---")
    print(found["body"])


def notify_retry(args):
    from callcenter.notify.records import requeue_dead

    now = datetime.datetime.now(datetime.timezone.utc)
    if not _audited(args, "notify_retry", None, requeue_dead, args.message_id, now):
        exit_with([f"message #{args.message_id} is not a dead letter (see callcenter notify show)"], CONFIG_ERROR)
    print(f"message #{args.message_id} queued again; the running server sends it at its next sweep")


def register(commands, with_config):
    """Add `notify` and its actions to the CLI's subcommands."""
    from callcenter.notify.subscriptions import CHANNELS, EVENTS, LANGUAGES
    from callcenter.notify.records import STATES

    notify = commands.add_parser(
        "notify", help="notifications: investors' subscriptions and the messages sent (changes audited)"
    ).add_subparsers(dest="notify_command", required=True, metavar="ACTION")

    def action(name, run, help):
        p = notify.add_parser(name, help=help, allow_abbrev=False)
        with_config(p)
        p.set_defaults(run=run)
        return p

    def recipient(p):
        p.add_argument("fund_account", metavar="FUND_ACCOUNT")
        p.add_argument("channel", choices=CHANNELS)
        p.add_argument("address", metavar="ADDRESS", help="mobile number, pager id, e-mail address or webhook id")

    subscribing = action("subscribe", notify_subscribe, "subscribe an investor to events on a channel, or change it")
    recipient(subscribing)
    subscribing.add_argument("--events", default="fill,alert,rejection",
                             help=f"comma-separated, among {','.join(EVENTS)} [all]")
    subscribing.add_argument("--language", choices=LANGUAGES, default="zh", help="[zh]")
    subscribing.add_argument("--quiet", metavar="HH:MM-HH:MM", help="quiet hours, Beijing time (alerts still come)")
    recipient(action("unsubscribe", notify_unsubscribe, "remove a subscription"))
    action("subscriptions", notify_subscriptions, "list an investor's subscriptions").add_argument(
        "fund_account", metavar="FUND_ACCOUNT"
    )
    listing = action("messages", notify_messages, "list messages, newest first")
    listing.add_argument("--account", metavar="FUND_ACCOUNT")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--limit", type=int, default=50)
    action("show", notify_show, "show a message, its history and its text").add_argument("message_id", type=int)
    action("retry", notify_retry, "send a dead letter again").add_argument("message_id", type=int)
