"""
Staff over HTTP: agents, supervisors and administrators (table C{agents})
authenticate with HTTP Basic (RFC 7617), their agent id and password, on
every request; an API names the roles an endpoint is open to, and anyone
else who authenticates is told 403.  Put a TLS-terminating proxy in front:
Basic sends the password with every request.

Lockout.  The agents table has no column counting wrong passwords, so they
are counted in memory, per agent id and per client address:
C{max_failures} wrong passwords for one agent id, or
C{max_failures_per_address} from one address (against any ids), within
C{lockout_seconds} lock that id or that address for C{lockout_seconds}; a
right password clears its id's count, not its address's.  While
locked, no password is checked, right or wrong: the answer is 429 with
Retry-After.  The counts are lost at a restart and not shared between
servers: a brake on guessing that lifts by itself, not a lock staff must
undo.  Behind a proxy every request comes from the proxy's address, which
the per-address count then covers as a whole (no X-Forwarded-For is
trusted: anyone could send one).  An unknown agent id is answered, and
timed, like a wrong password.

Speed.  argon2 costs tens of milliseconds of CPU by design, too much to pay
at every request of a staff tool that polls.  After argon2 has said yes, a
MAC of the password (keyed BLAKE2b under a key drawn when the process
starts, as in L{callcenter.radius.policy}) is remembered with the hash it
was verified against for C{credential_ttl} seconds; the same password is
then checked against it by a constant-time compare.  The agent's row is
still read at every request (one small transaction), so a new password, a
new role or a removed agent count at once: only argon2 is skipped.
"""

import base64
import binascii
import hashlib
import hmac
import math
import os
import re
from dataclasses import dataclass

import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger

from callcenter.passwords import hash_password, verify_password
from callcenter.store.schema import agents
from callcenter.web.json_api import APIError, client_host, correlation_id, header

__all__ = ["ROLES", "StaffAuthenticator", "StaffMember", "basic_credentials"]

ROLES = ("agent", "supervisor", "admin")

# RFC 7617 §2: "Basic" then token68.
_BASIC = re.compile(r"Basic +([A-Za-z0-9+/]+=*)", re.IGNORECASE | re.ASCII)
_AGENT_ID_LENGTH = agents.c.agent_id.type.length
_MAX_PASSWORD = 128


@dataclass(frozen=True)
class StaffMember:
    """Who a request authenticated as."""

    agent_id: str
    name: str
    role: str


def basic_credentials(request, realm):
    """
    The (user id, password) of the request's C{Authorization: Basic}
    header; L{APIError} 401 C{credentials_required} without one that holds
    an id and a password.
    """
    authorization = header(request, b"authorization")
    match = None if authorization is None else _BASIC.fullmatch(authorization.strip())
    user, colon, password = "", "", ""
    if match is not None:
        try:
            user, colon, password = base64.b64decode(match.group(1), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            pass
    if not (user and colon):
        raise APIError(401, "credentials_required", "请提供工号和密码（HTTP Basic）",
                       "this needs an agent id and password (HTTP Basic authentication)",
                       headers={"WWW-Authenticate": _challenge(realm)})
    return user, password


def _challenge(realm):
    return f'Basic realm="{realm}", charset="UTF-8"'


class _Failures:
    """
    Wrong passwords by key (an agent id, an address): C{limit} of them
    within C{period} seconds block the key for C{period}.  At most
    C{max_keys} keys: beyond, those whose period is over are dropped, then
    the oldest.
    """

    def __init__(self, clock, limit, period, max_keys):
        self._clock = clock
        self._limit = limit
        self._period = period
        self._max_keys = max_keys
        self._entries = {}  # key -> [failures, counting since, blocked until]

    def blocked_for(self, key):
        """Seconds until C{key} may try again; 0 when it may now."""
        entry = self._entries.get(key)
        return 0 if entry is None else max(0.0, entry[2] - self._clock.seconds())

    def failed(self, key):
        now = self._clock.seconds()
        entry = self._entries.get(key)
        if entry is None or now - entry[1] >= self._period:
            self._make_room()
            entry = self._entries[key] = [0, now, 0.0]
        entry[0] += 1
        if entry[0] >= self._limit:
            entry[2] = now + self._period
            entry[0], entry[1] = 0, entry[2]

    def clear(self, key):
        self._entries.pop(key, None)

    def _make_room(self):
        if len(self._entries) < self._max_keys:
            return
        now = self._clock.seconds()

        def over(entry):
            _, since, until = entry
            return until <= now and now - since >= self._period

        for key in [k for k, entry in self._entries.items() if over(entry)]:
            del self._entries[key]
        for key in list(self._entries)[: max(0, len(self._entries) - self._max_keys + 1)]:
            del self._entries[key]


def _agent(connection, agent_id):
    """(StaffMember, password hash) of C{agent_id}, or None."""
    row = connection.execute(
        sa.select(agents.c.agent_id, agents.c.name, agents.c.role, agents.c.password_hash)
        .where(agents.c.agent_id == agent_id)
    ).first()
    return None if row is None else (StaffMember(row.agent_id, row.name, row.role), row.password_hash)


_NOBODYS_HASH = []


def _verify_nobody(password):
    """
    argon2 as for an agent, against the hash of a password nobody has: an
    unknown agent id takes as long as a wrong password.  The hash is made
    by the current hasher, so it costs what the agents' hashes cost.
    """
    if not _NOBODYS_HASH:
        _NOBODYS_HASH.append(hash_password(os.urandom(24).hex()))
    verify_password(_NOBODYS_HASH[0], password)
    return False


class StaffAuthenticator:
    """
    @param store: the L{callcenter.interfaces.IStore} holding the agents.
    @param clock: L{twisted.internet.interfaces.IReactorTime}, for the
        lockouts and the remembered passwords.
    @param in_thread: C{in_thread(function, *args)} runs a blocking
        function off the reactor and returns a Deferred (argon2).
    @param realm: what C{WWW-Authenticate} names.
    """

    log = Logger()

    def __init__(self, store, clock, in_thread, realm="callcenter staff", max_failures=5,
                 max_failures_per_address=20, lockout_seconds=900.0, credential_ttl=300.0, max_keys=10_000):
        self._store = store
        self._clock = clock
        self._in_thread = in_thread
        self.realm = realm
        self.credential_ttl = credential_ttl
        self._by_agent = _Failures(clock, max_failures, lockout_seconds, max_keys)
        self._by_address = _Failures(clock, max_failures_per_address, lockout_seconds, max_keys)
        self._key = os.urandom(32)
        self._max_keys = max_keys
        self._verified = {}  # agent id -> (MAC of the password, the hash it matched, until)

    @defer.inlineCallbacks
    def authenticate(self, request, roles):
        """
        The L{StaffMember} the request authenticates as, if their role is
        one of C{roles}; else L{APIError}: 401 (no or wrong credentials),
        429 (locked out for now) or 403 (a role not allowed).
        """
        agent_id, password = basic_credentials(request, self.realm)
        address = client_host(request)
        wait = max(self._by_agent.blocked_for(agent_id), self._by_address.blocked_for(address))
        if wait:
            self._refused(request, agent_id, "locked out")
            minutes = math.ceil(wait / 60)
            raise APIError(429, "too_many_attempts", f"密码错误次数过多，请 {minutes} 分钟后再试",
                           f"too many wrong passwords: try again in {minutes} min",
                           headers={"Retry-After": str(math.ceil(wait))})
        found = None
        if len(agent_id) <= _AGENT_ID_LENGTH and len(password) <= _MAX_PASSWORD:
            found = yield self._store.transaction(_agent, agent_id)
        if found is None:
            good = yield self._in_thread(_verify_nobody, password)
        else:
            member, password_hash = found
            good = self._remembered(agent_id, password_hash, password)
            if not good:
                good = yield self._in_thread(verify_password, password_hash, password)
                if good:
                    self._remember(agent_id, password_hash, password)
        if not good:
            self._by_agent.failed(agent_id)
            self._by_address.failed(address)
            self._refused(request, agent_id, "wrong password or unknown id")
            raise APIError(401, "wrong_credentials", "工号或密码错误", "wrong agent id or password",
                           headers={"WWW-Authenticate": _challenge(self.realm)})
        self._by_agent.clear(agent_id)
        if member.role not in roles:
            self._refused(request, agent_id, f"role {member.role}")
            raise APIError(403, "role_not_allowed", f"您的岗位（{member.role}）无权执行此操作",
                           f"your role ({member.role}) may not do this")
        return member

    def _refused(self, request, agent_id, why):
        # The password is never logged.
        self.log.info("staff {agent} refused from {client}: {why}", agent=agent_id[:_AGENT_ID_LENGTH],
                      client=client_host(request), why=why, cid=correlation_id(request))

    def _mac(self, password):
        return hashlib.blake2b(password.encode("utf-8"), key=self._key, digest_size=32).digest()

    def _remembered(self, agent_id, password_hash, password):
        entry = self._verified.get(agent_id)
        if entry is None or entry[1] != password_hash or entry[2] <= self._clock.seconds():
            return False
        return hmac.compare_digest(entry[0], self._mac(password))

    def _remember(self, agent_id, password_hash, password):
        if self.credential_ttl <= 0:
            return
        now = self._clock.seconds()
        if len(self._verified) >= self._max_keys:
            self._verified = {k: v for k, v in self._verified.items() if v[2] > now}
            if len(self._verified) >= self._max_keys:
                self._verified.clear()
        self._verified[agent_id] = (self._mac(password), password_hash, now + self.credential_ttl)
