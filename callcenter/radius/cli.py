"""
`callcenter internet ...`: investors' internet accounts, their tiers and
sessions (the radius subsystem) from a shell; every change audited, as
the other account commands are.  A kick goes through the running
server's HTTP API, which sends the Disconnect-Request.
"""

import base64
import getpass
import json
import re
import sys
import time
import urllib.error
import urllib.request

from callcenter.cli import _chap_key_variable, _configured_chap_secrets, _in_database, _staff_origin
from callcenter.tap import CONFIG_ERROR, exit_with, load

# What `internet kick` exits with when the NAS refused or did not answer.
NOT_KICKED = 1


def _chap_secrets(args):
    """
    The L{ChapSecrets} sealing CHAP passwords, from the environment variable
    the [radius] table names (CALLCENTER_RADIUS_CHAP_KEY by default).
    """
    config, _ = load(args.config)
    secrets = _configured_chap_secrets(config)
    if secrets is None:
        variable = _chap_key_variable(config)
        exit_with([f"CHAP needs the key in ${variable} (32 random bytes: openssl rand -hex 32)"], CONFIG_ERROR)
    return secrets


def _internet_password(args):
    """
    The new internet password, in clear for the caller to hash (and seal
    for CHAP): from standard input with --password-stdin, else asked twice
    without echo; never from the command line.
    """
    from callcenter.radius.accounts import InternetAccountError, check_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        exit_with(["no terminal to ask for the internet password: give it on standard input with --password-stdin"],
                  CONFIG_ERROR)
    else:
        password = getpass.getpass("new internet password (6 to 64 characters): ")
        if getpass.getpass("the same again: ") != password:
            exit_with(["the two passwords differ"], CONFIG_ERROR)
    try:
        check_password(password)
    except InternetAccountError as e:
        exit_with([str(e)], CONFIG_ERROR)
    return password


def _internet_change(args, action, work, *work_args):
    """
    Run a change of L{callcenter.radius.accounts} that returns the account
    it changed, audited for the user running the command in the same
    transaction.  A mistake is reported in one line.
    """
    from callcenter.radius.accounts import InternetAccountError
    from callcenter.trading import audit

    origin = _staff_origin()

    def audited(connection):
        changed = work(connection, *work_args)
        audit.append(connection, origin, action, "ok", changed.fund_account_no, {"username": changed.username})
        return changed

    return _in_database(args, audited, refused=InternetAccountError)


# What the password sealed for CHAP allows (callcenter/radius/mschap.py derives MS-CHAP's NT hash from it).
CHALLENGE_METHODS = "PAP, CHAP and MS-CHAP"


def _sealed(args, username, password, chap):
    return _chap_secrets(args).seal(username, password) if chap else None


def internet_open(args):
    from callcenter.passwords import hash_password
    from callcenter.radius.accounts import open_account

    password = _internet_password(args)
    sealed = _sealed(args, args.username, password, args.chap)
    opened = _internet_change(
        args, "internet_open", open_account, args.fund_account, args.username, hash_password(password), args.tier,
        sealed, args.language,
    )
    methods = CHALLENGE_METHODS if opened.chap else "PAP"
    print(f"internet account {opened.username} opened for fund account {opened.fund_account_no}: "
          f"tier {opened.tier}, {methods}, language {opened.language}")


def internet_enable(args):
    from callcenter.radius.accounts import set_enabled

    _internet_change(args, "internet_enable", set_enabled, args.username, True)
    print(f"internet account {args.username}: enabled")


def internet_disable(args):
    from callcenter.radius.accounts import set_enabled

    _internet_change(args, "internet_disable", set_enabled, args.username, False)
    print(f"internet account {args.username}: disabled (sessions online end when the NAS next asks, "
          "or when kicked)")


def internet_unlock(args):
    from callcenter.radius.accounts import unlock

    _internet_change(args, "internet_unlock", unlock, args.username)
    print(f"internet account {args.username}: failed logins cleared, unlocked")


def internet_tier(args):
    from callcenter.radius.accounts import set_tier

    _internet_change(args, "internet_tier", set_tier, args.username, args.tier)
    print(f"internet account {args.username}: tier {args.tier}")


def _internet_account(args, username):
    from callcenter.radius.accounts import account

    found = _in_database(args, account, username)
    if found is None:
        exit_with([f"no internet account {username!r}"], CONFIG_ERROR)
    return found


def internet_passwd(args):
    from callcenter.passwords import hash_password
    from callcenter.radius.accounts import set_password

    chap = args.chap
    if chap is None:
        chap = _internet_account(args, args.username).chap
    password = _internet_password(args)
    sealed = _sealed(args, args.username, password, chap)
    _internet_change(args, "internet_password", set_password, args.username, hash_password(password), sealed)
    methods = CHALLENGE_METHODS if chap else "PAP only"
    print(f"internet account {args.username}: password set ({methods}), failed logins cleared, unlocked")


def _duration(seconds):
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min"


def _tier_text(tier):
    monthly = "unlimited" if tier.monthly_seconds is None else f"{tier.monthly_seconds / 3600:g} h a month"
    idle = "no idle timeout" if tier.idle_timeout is None else f"idle timeout {tier.idle_timeout} s"
    sessions = "session" if tier.simultaneous_use == 1 else "sessions"
    return f"{monthly}, {idle}, {tier.simultaneous_use} {sessions} at a time"


def _hours(text):
    if text == "unlimited":
        return None
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours <= 744:
        exit_with([f"--hours: expected hours a month from 0 to 744, or unlimited, not {text!r}"], CONFIG_ERROR)
    return round(hours * 3600)


def internet_tier_add(args):
    from callcenter.radius.accounts import InternetAccountError, Tier, add_tier
    from callcenter.trading import audit

    tier = Tier(args.name, _hours(args.hours), args.idle, args.simultaneous)
    origin = _staff_origin()

    def added(connection):
        new = add_tier(connection, tier.name, tier.monthly_seconds, tier.idle_timeout, tier.simultaneous_use)
        detail = {"tier": tier.name, "monthly_seconds": tier.monthly_seconds, "idle_timeout": tier.idle_timeout,
                  "simultaneous_use": tier.simultaneous_use}
        audit.append(connection, origin, "internet_tier_add", "ok", None, detail)
        return new

    new = _in_database(args, added, refused=InternetAccountError)
    print(f"tier {tier.name} {'added' if new else 'changed'}: {_tier_text(tier)}")


def internet_tiers(args):
    from callcenter.radius.accounts import tiers

    found = _in_database(args, tiers)
    for tier in found:
        print(f"{tier.name}: {_tier_text(tier)}")
    if not found:
        print("no tiers: add one with 'callcenter internet tier-add'")


def _local(moment):
    from callcenter.radius.accounts import MONTH_ZONE

    return f"{moment.astimezone(MONTH_ZONE):%Y-%m-%d %H:%M:%S}"


def _session_line(session):
    return (
        f"#{session.id} {session.username or '-'} at {session.client} ({session.nas_ip or 'no NAS address'}): "
        f"session {session.acct_session_id}, address {session.framed_ip or 'none'}, "
        f"since {_local(session.started_at)}, "
        f"{_duration(session.session_time)}, {session.input_octets} octets in, {session.output_octets} out"
    )


def internet_online(args):
    from callcenter.radius.accounts import sessions_online

    online = _in_database(args, sessions_online, args.user, args.client)
    for session in online:
        print(_session_line(session))
    print(f"{len(online)} session{'' if len(online) == 1 else 's'} online (times in Beijing time)")


def internet_show(args):
    from callcenter.radius.accounts import account, month_of, sessions_online, tiers, usage

    username = args.username

    def read(connection):
        found = account(connection, username)
        if found is None:
            return None
        tier = next(tier for tier in tiers(connection) if tier.name == found.tier)
        used = usage(connection, username, month_of(time.time()))
        return found, tier, used, sessions_online(connection, username=username)

    shown = _in_database(args, read)
    if shown is None:
        exit_with([f"no internet account {username!r}"], CONFIG_ERROR)
    found, tier, used, online = shown
    locked = f"locked since {_local(found.locked_at)}" if found.locked_at else "not locked"
    left = ""
    if tier.monthly_seconds is not None:
        left = f", {_duration(max(0, tier.monthly_seconds - used.seconds))} left"
    print(
        f"internet account {found.username} of fund account {found.fund_account_no}\n"
        f"  {'enabled' if found.enabled else 'disabled'}; tier {tier.name}: {_tier_text(tier)}\n"
        f"  {CHALLENGE_METHODS if found.chap else 'PAP only'}; messages in {found.language}; "
        f"logins: {found.failed_logins} failed, {locked}\n"
        f"  {used.month}: {_duration(used.seconds)} used{left}; "
        f"{used.input_octets} octets in, {used.output_octets} out\n"
        f"  online: {len(online)}"
    )
    for session in online:
        print(f"    {_session_line(session)}")


def _web_url(config):
    """
    Where this host reaches the server's HTTP API, from C{[web] listen}: a
    TCP endpoint with a fixed port (a wildcard interface is reached on the
    loopback address); anything else needs --url.
    """
    web = config.subsystems.get("web")
    if web is None:
        exit_with([f"{config.path}: [web] is not enabled: internet kick goes through the server's HTTP API "
                   "(give --url to reach another server's)"], CONFIG_ERROR)
    # Endpoint strings separate fields with ":" and escape it as "\:" (an IPv6 interface).
    kind, *fields = [field.replace("\\:", ":") for field in re.split(r"(?<!\\):", web.listen)]
    options = dict(field.partition("=")[::2] for field in fields[1:])
    if kind not in ("tcp", "tcp6") or not fields or not fields[0].isdigit() or int(fields[0]) == 0:
        exit_with([f"{config.where('web', 'listen')}: cannot tell an HTTP address from {web.listen!r}: "
                   "give --url"], CONFIG_ERROR)
    host = options.get("interface") or ("::" if kind == "tcp6" else "0.0.0.0")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{fields[0]}"


def _staff_password(args):
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        exit_with(["no terminal to ask for the password: give it on standard input with --password-stdin"],
                  CONFIG_ERROR)
    return getpass.getpass(f"password of agent {args.agent}: ")


def _attempts(n):
    return f"{n} attempt{'' if n == 1 else 's'}"


def internet_kick(args):
    """
    Ask the running server to disconnect a session: only its process holds
    the Disconnect-Request client (its socket, identifiers and the NASes'
    secrets), so this goes through its HTTP API, as the staff member
    C{--agent}, whose role the API checks and whose id the audit records.
    """
    config, _ = load(args.config)
    radius = config.subsystems.get("radius")
    if radius is None:
        exit_with([f"{config.path}: [radius] is not enabled: there are no sessions to kick"], CONFIG_ERROR)
    base = (args.url or _web_url(config)).rstrip("/")
    credentials = base64.b64encode(f"{args.agent}:{_staff_password(args)}".encode("utf-8")).decode("ascii")
    request = urllib.request.Request(
        f"{base}/api/v1/internet/sessions/{args.session_id}/kick", data=b"", method="POST",
        headers={"Authorization": f"Basic {credentials}", "Accept-Language": "en"},
    )
    # The API answers once the NAS has, or the retries have run out.
    waits = radius.disconnect_timeout * (2**radius.disconnect_tries - 1)
    # No proxy from the environment: a proxy would not reach this host's loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=waits + 30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        exit_with([f"cannot reach the server at {base}: {getattr(e, 'reason', e)}"], CONFIG_ERROR)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    error = body.get("error")
    if status == 200 and "outcome" in body:
        session = body["session"]
        print(f"session {session['id']} of {session['username'] or '-'} at {session['client']}: disconnected "
              f"(Disconnect-ACK after {_attempts(body['attempts'])}); it ends when the NAS sends its Accounting-Stop")
    elif isinstance(error, dict) and error.get("code") in ("nas_refused", "nas_timeout"):
        exit_with([f"session {args.session_id}: {error.get('message_en')}"], NOT_KICKED)
    elif isinstance(error, dict):
        exit_with([f"{base}: {status} {error.get('code')}: {error.get('message_en')}"], CONFIG_ERROR)
    else:
        exit_with([f"{base}: HTTP {status}, not an answer of the internet API"], CONFIG_ERROR)


def register(commands, with_config):
    """Add `internet` and its actions to the CLI's subcommands."""
    internet = commands.add_parser(
        "internet", help="investors' internet accounts, their tiers and sessions (RADIUS; changes audited)"
    ).add_subparsers(dest="internet_command", required=True, metavar="ACTION")

    def internet_action(name, run, help, username=True):
        # No abbreviations: "--password x" must not pass for --password-stdin.
        p = internet.add_parser(name, help=help, allow_abbrev=False)
        with_config(p)
        if username:
            p.add_argument("username", metavar="USERNAME", help="what the investor types at the NAS")
        p.set_defaults(run=run)
        return p

    def password_from_stdin(p):
        p.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the internet password from the first line of standard input instead of asking for it",
        )

    opening = internet_action("open", internet_open, "open an internet account for a fund account", username=False)
    opening.add_argument("fund_account", metavar="FUND_ACCOUNT", help="the investor's fund account number")
    opening.add_argument("username", metavar="USERNAME", help="what the investor will type at the NAS")
    opening.add_argument("--tier", default="basic", help="quota tier [basic]")
    opening.add_argument(
        "--chap", action="store_true",
        help="allow CHAP and MS-CHAP too: keeps the password encrypted with the key in "
        "$CALLCENTER_RADIUS_CHAP_KEY",
    )
    opening.add_argument("--language", choices=("zh", "en"), help="of the NAS's messages [the investor's]")
    password_from_stdin(opening)
    internet_action("enable", internet_enable, "let an internet account connect again")
    internet_action("disable", internet_disable, "refuse an internet account's logins")
    internet_action("unlock", internet_unlock, "clear an internet account's failed logins and the lock")
    internet_action("tier", internet_tier, "move an internet account to another tier").add_argument(
        "tier", metavar="TIER"
    )
    passwd = internet_action("passwd", internet_passwd, "set a new internet password, and unlock")
    password_from_stdin(passwd)
    chap = passwd.add_mutually_exclusive_group()
    chap.add_argument(
        "--chap", dest="chap", action="store_true", default=None, help="allow CHAP and MS-CHAP from now on"
    )
    chap.add_argument("--no-chap", dest="chap", action="store_false", help="refuse CHAP and MS-CHAP from now on")
    internet_action("tiers", internet_tiers, "list the quota tiers", username=False)
    tier_adding = internet_action("tier-add", internet_tier_add, "add a quota tier, or change one", username=False)
    tier_adding.add_argument("name", metavar="NAME")
    tier_adding.add_argument("--hours", required=True, metavar="H|unlimited", help="hours a month")
    tier_adding.add_argument("--idle", type=int, metavar="SECONDS", help="idle timeout [the NAS's]")
    tier_adding.add_argument("--simultaneous", type=int, default=1, metavar="N", help="sessions at a time [1]")
    online = internet_action("online", internet_online, "list the sessions online", username=False)
    online.add_argument("--user", metavar="USERNAME", help="only this account's")
    online.add_argument("--client", metavar="NAS", help="only this NAS's")
    internet_action("show", internet_show, "show an internet account and its use this month")
    kick = internet_action(
        "kick", internet_kick, "disconnect a session now, through the running server's HTTP API", username=False
    )
    kick.add_argument(
        "session_id", metavar="SESSION_ID", type=int,
        help="the session's id: the #N of callcenter internet online (or GET /api/v1/internet/sessions)",
    )
    kick.add_argument("--agent", required=True, metavar="ID", help="your agent id (a supervisor or an administrator)")
    kick.add_argument(
        "--password-stdin", action="store_true",
        help="read your password from the first line of standard input instead of asking for it",
    )
    kick.add_argument("--url", help="the server's HTTP address [from [web] listen, e.g. http://127.0.0.1:8080]")
