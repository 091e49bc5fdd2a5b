"""
Who may connect: Access-Requests decided from the investors' internet
accounts (L{callcenter.radius.accounts}).

In this order:

1. an unknown user is told C{bad_password}, as a wrong password is, so
   that a NAS's login page does not tell which accounts exist;
2. a locked account (C{max_attempts} wrong passwords in a row, as trading
   logins lock) is C{locked} until staff unlock it or set a new password;
3. CHAP or MS-CHAP for an account without a CHAP secret, or a method
   other than PAP, CHAP and MS-CHAP (v1 and v2), is C{method_not_allowed}
   (see L{callcenter.radius.chap} for what CHAP requires, and
   L{callcenter.radius.mschap}: MS-CHAP needs the same secret); an
   MS-CHAP response already accepted once is refused as C{bad_password}
   without counting (a replay: a NAS draws a new challenge for every
   login, and resends a lost request as a retransmission, which the
   duplicate cache answers);
4. the password: wrong is C{bad_password} and counts towards the lock (the
   attempt that locks is told C{locked});
5. then, the password being right: C{disabled}, C{quota_exhausted} (the
   tier's monthly time used up), C{already_online} (as many sessions
   online as the tier allows);
6. else accept, with Session-Timeout the time left this month (none when
   unlimited), the tier's Idle-Timeout and a Reply-Message in the
   account's language.

The decision is the same whatever the method; MS-CHAP only adds to its
answer (MS-CHAP2-Success and the MPPE keys to an accept, MS-CHAP-Error
to a reject).

Speed.  argon2 costs tens of milliseconds of CPU by design: a few dozen PAP
checks a second per core, against the thousands of Access-Requests a
second the NASes may send.  So after argon2 has said yes, the policy
remembers a MAC of the password under a key drawn at random when the
process starts, with the hash it was verified against, for
C{credential_ttl} seconds; a request with the same password is then
checked against that memory (a constant-time compare), with no thread.
The MAC is keyed BLAKE2b (RFC 7693 §2.9: a MAC by design, like
HMAC-SHA256, and a third of its cost here, where it is most of the work
of a decision).  The plaintext is never kept, and the MACs mean nothing
outside this process.  Any change of the stored hash (a new
password) misses the memory, as does its expiry; a wrong password always
goes to argon2.  Account states come from L{AccountDirectory} (see there
how current it is), so that a request for a known user whose password is
remembered is decided at once: no thread, no transaction.

Simultaneous-Use is counted from the sessions accounting reports: two
Access-Requests racing before either session's Accounting-Start can both
be accepted (as with FreeRADIUS's check against its session table).
"""

import hashlib
import hmac
import os
from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callcenter.passwords import verify_password
from callcenter.radius.accounts import clear_failures, record_failure
from callcenter.radius.chap import ChapSecretError, chap_response_matches
from callcenter.radius.directory import NOT_CACHED, Expiring
from callcenter.radius.interfaces import IAccessPolicy
from callcenter.radius.model import AccessDecision
from callcenter.radius.mschap import MSCHAP, MSCHAPV2, ms_chap_error, ms_chap_matches, ms_chap_success

__all__ = ["MAX_ATTEMPTS", "AccessPolicy", "welcome"]

MAX_ATTEMPTS = 5
PAP = "pap"
CHAP = "chap"
MS_CHAP = frozenset({MSCHAP, MSCHAPV2})
# The methods that need the password sealed for CHAP.
SEALED = frozenset({CHAP}) | MS_CHAP
# Seconds an accepted MS-CHAP challenge is remembered, to refuse its replay.
MS_CHAP_REPLAY_SECONDS = 3600.0


def _hours_minutes(seconds):
    minutes = seconds // 60
    return minutes // 60, minutes % 60


def welcome(language, remaining_seconds):
    """The Reply-Message of an Access-Accept."""
    if remaining_seconds is None:
        return "Welcome to free internet access." if language == "en" else "欢迎使用免费上网服务。"
    hours, minutes = _hours_minutes(remaining_seconds)
    if language == "en":
        return f"Welcome to free internet access. Time left this month: {hours} h {minutes} min."
    return f"欢迎使用免费上网服务。本月剩余上网时长：{hours} 小时 {minutes} 分钟。"


@implementer(IAccessPolicy)
class AccessPolicy:
    """
    @param store: the L{callcenter.interfaces.IStore}, for failed logins.
    @param clock: L{twisted.internet.interfaces.IReactorTime}.
    @param in_thread: C{in_thread(function, *args)} runs a blocking function
        off the reactor and returns a Deferred (argon2).
    @param directory: the L{callcenter.radius.directory.AccountDirectory}
        shared with the accounting sink.
    @param chap_secrets: the L{callcenter.radius.chap.ChapSecrets} opening
        CHAP secrets, or None: CHAP is refused.
    @param max_attempts: wrong passwords in a row that lock an account.
    @param credential_ttl: seconds a password verified by argon2 is
        remembered; 0 remembers none.
    @param max_credentials: the most passwords remembered.
    """

    log = Logger()

    def __init__(self, store, clock, in_thread, directory, chap_secrets=None, max_attempts=MAX_ATTEMPTS,
                 credential_ttl=600.0, max_credentials=200_000):
        self._store = store
        self._clock = clock
        self._in_thread = in_thread
        self._directory = directory
        self._chap = chap_secrets
        self.max_attempts = max_attempts
        self.credential_ttl = credential_ttl
        # Keyed once: each MAC copies this state (a third cheaper than keying anew).
        self._mac_state = hashlib.blake2b(key=os.urandom(32), digest_size=32)
        # username -> (MAC of the password, the hash it matched)
        self._verified = Expiring(clock, max_credentials)
        self._verifying = {}  # (username, hash, MAC) -> Deferreds waiting for argon2
        # username -> (state, month, decision); as many as there are accounts
        self._decisions = {}
        # (username, MS-CHAP challenge) accepted; see L{MS_CHAP_REPLAY_SECONDS}
        self._ms_chap_accepted = Expiring(clock, max_credentials)

    def decide_now(self, request):
        """
        The L{AccessDecision} if what is remembered decides C{request} (the
        account's state, and for PAP a verified password), else None: then
        L{authenticate} must.  The protocol asks this first, so that the
        steady state (users coming back within C{credential_ttl}) costs no
        Deferred.
        """
        state = self._directory.cached(request.user_name)
        if state is NOT_CACHED:
            return None
        return self._answered(request, state, self._decide_from_memory(request, state))

    def authenticate(self, request):
        state = self._directory.cached(request.user_name)
        if state is not NOT_CACHED:
            decision = self._decide_from_memory(request, state)
            if decision is not None:
                return defer.succeed(self._answered(request, state, decision))
        d = self._authenticate(request, state)
        if request.method in MS_CHAP:
            d.addCallback(lambda decided: self._answered(request, *decided))
        else:
            d.addCallback(lambda decided: decided[1])
        return d

    def _decide_from_memory(self, request, state):
        refused = self._refused_before_password(request, state)
        if refused is not None:
            return refused
        # Failed logins to clear, or a password not known right, need the store.
        if not state.failed_logins and self._known_password(request, state):
            return self._decide(state)
        return None

    @defer.inlineCallbacks
    def _authenticate(self, request, state):
        """Fires with (the state, the decision)."""
        if state is NOT_CACHED:
            state = yield self._directory.load(request.user_name)
            refused = self._refused_before_password(request, state)
            if refused is not None:
                return state, refused
        good = self._known_password(request, state)
        if good is None:
            if request.method in SEALED:
                # Not counted as a wrong password: the key is wrong.
                return state, AccessDecision.reject("method_not_allowed", state.language)
            good = yield self._argon2(state, self._pap_password(request))
        username = state.username
        if not good:
            locked = yield self._store.transaction(
                record_failure, username, self.max_attempts, self._clock.seconds()
            )
            self._directory.forget(username)
            if locked:
                self.log.info("internet account {username} locked after {attempts} wrong passwords",
                              username=username, attempts=self.max_attempts)
            return state, AccessDecision.reject("locked" if locked else "bad_password", state.language)
        if state.failed_logins:
            yield self._store.transaction(clear_failures, username)
            self._directory.forget(username)
        return state, self._decide(state)

    def _refused_before_password(self, request, state):
        if state is None:
            return AccessDecision.reject("bad_password")
        if state.locked:
            return AccessDecision.reject("locked", state.language)
        if request.method in SEALED:
            if state.chap_secret is None or self._chap is None:
                return AccessDecision.reject("method_not_allowed", state.language)
            if request.method in MS_CHAP and self._ms_chap_accepted.get(
                (state.username, request.chap_challenge)
            ) is not NOT_CACHED:
                self.log.warn("a replayed MS-CHAP response for internet account {username} refused",
                              username=state.username)
                return AccessDecision.reject("bad_password", state.language)
        elif request.method != PAP:
            return AccessDecision.reject("method_not_allowed", state.language)
        return None

    def _answered(self, request, state, decision):
        """
        C{decision} as answered to C{request}: for MS-CHAP, with the
        attributes of L{callcenter.radius.mschap} added (the success, which
        needs the password again, or the error).
        """
        if decision is None or request.method not in MS_CHAP:
            return decision
        if not decision.accepted:
            return replace(decision, request_attributes=ms_chap_error(request, decision.reason))
        try:
            password = self._chap.open(state.username, state.chap_secret)
        except ChapSecretError:  # it opened to check the response: cannot happen with one key
            refused = AccessDecision.reject("method_not_allowed", state.language)
            return replace(refused, request_attributes=ms_chap_error(request, refused.reason))
        self._ms_chap_accepted.put((state.username, request.chap_challenge), True, MS_CHAP_REPLAY_SECONDS)
        return replace(decision, request_attributes=ms_chap_success(password, request))

    def _decide(self, state):
        """
        The decision once the password is right.  The same for as long as
        the state and the month are: kept, and the same (immutable)
        decision given to each request until then.
        """
        month = self._directory.month()
        decided = self._decisions.get(state.username)
        if decided is not None and decided[0] is state and decided[1] == month:
            return decided[2]
        decision = self._decision(state, month)
        self._decisions[state.username] = (state, month, decision)
        return decision

    def _decision(self, state, month):
        if not state.enabled:
            return AccessDecision.reject("disabled", state.language)
        remaining = None
        if state.monthly_seconds is not None:
            used = state.used_seconds if state.month == month else 0
            remaining = state.monthly_seconds - used
            if remaining <= 0:
                return AccessDecision.reject("quota_exhausted", state.language)
        if state.online >= state.simultaneous_use:
            return AccessDecision.reject("already_online", state.language)
        return AccessDecision(
            True,
            reply_message=welcome(state.language, remaining),
            session_timeout=remaining,
            idle_timeout=state.idle_timeout,
        )

    # -- passwords

    @staticmethod
    def _pap_password(request):
        # RFC 2865 §5.2: the password is padded with NULs to 16 octets.
        return (request.password or b"").rstrip(b"\0")

    def _mac(self, password):
        mac = self._mac_state.copy()
        mac.update(password)
        return mac.digest()

    def _known_password(self, request, state):
        """
        True or False when known without a thread; None when argon2 must
        say (PAP), or when the CHAP secret cannot be opened.
        """
        if request.method in SEALED:
            if request.chap_id is None or not request.chap_challenge or not request.chap_response:
                return False
            try:
                secret = self._chap.open(state.username, state.chap_secret)
            except ChapSecretError:
                self.log.warn("the CHAP secret of internet account {username} does not open with the key",
                              username=state.username)
                return None
            if request.method in MS_CHAP:
                return ms_chap_matches(secret, request)
            return chap_response_matches(secret, request.chap_id, request.chap_challenge, request.chap_response)
        remembered = self._verified.get(state.username)
        if remembered is NOT_CACHED or remembered[1] != state.password_hash:
            return None
        return True if hmac.compare_digest(remembered[0], self._mac(self._pap_password(request))) else None

    def _argon2(self, state, password):
        """argon2 in a thread, once for concurrent requests with the same password; remembered if right."""
        mac = self._mac(password)
        key = (state.username, state.password_hash, mac)
        d = defer.Deferred()
        waiting = self._verifying.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._verifying[key] = [d]

        def verified(good):
            if good is True and self.credential_ttl > 0:
                self._verified.put(state.username, (mac, state.password_hash), self.credential_ttl)
            return good

        def answer(result):
            for waiter in self._verifying.pop(key):
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        self._in_thread(verify_password, state.password_hash, password).addCallback(verified).addBoth(answer)
        return d

    def forget(self, username):
        """Forget C{username}'s remembered password and state (the API calls this after a change)."""
        self._verified.pop(username)
        self._directory.forget(username)
