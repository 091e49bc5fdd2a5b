"""
Access-Requests decided (L{callcenter.radius.policy.AccessPolicy}): each
reason, CHAP, and what the caches remember and forget.
"""

import hashlib

import pytest
from twisted.internet import defer

from callcenter import passwords
from callcenter.radius import accounts as a
from callcenter.radius.chap import ChapSecrets
from callcenter.radius.directory import AccountDirectory
from callcenter.radius.model import AccessDecision, AccessRequest
from callcenter.radius.policy import AccessPolicy
from callcenter.store.schema import internet_usage, radius_sessions
from internet_helpers import NOON, PASSWORD, CountingStore, add_tiers, clock_at, fired, open_internet

KEY = bytes(range(32))
HOUR = 3600


class Threads:
    """in_thread run at once, counting argon2 verifications; or held until released."""

    def __init__(self):
        self.verifications = 0
        self.held = None

    def __call__(self, function, *args):
        if function is passwords.verify_password:
            self.verifications += 1
        if self.held is not None:
            d = defer.Deferred()
            self.held.append((d, function, args))
            return d
        return defer.succeed(function(*args))


class Setting:
    def __init__(self, database, chap_secrets=ChapSecrets(KEY), ttl=5.0):
        add_tiers(database)
        self.database = database
        self.store = CountingStore(database)
        self.clock = clock_at()
        self.threads = Threads()
        self.directory = AccountDirectory(self.store, self.clock, ttl=ttl)
        self.policy = AccessPolicy(self.store, self.clock, self.threads, self.directory, chap_secrets, max_attempts=3)

    def pap(self, username="zhang", password=PASSWORD):
        return fired(self.policy.authenticate(AccessRequest("bras-1", username, "pap", password=password.encode())))

    def chap(self, username="zhang", password=PASSWORD, chap_id=9):
        challenge = bytes(range(16))
        response = hashlib.md5(bytes((chap_id,)) + password.encode() + challenge).digest()
        request = AccessRequest("bras-1", username, "chap", chap_id=chap_id, chap_challenge=challenge,
                                chap_response=response)
        return fired(self.policy.authenticate(request))

    def change(self, work, *args):
        """A change from another process: this one learns of it when its cache expires."""
        return self.database.transaction(work, *args)

    def online(self, username, session_id="s1"):
        self.change(lambda c: c.execute(radius_sessions.insert().values(
            client="bras-1", acct_session_id=session_id, username=username, started_at=NOON, updated_at=NOON)))

    def used(self, username, seconds, month="2026-12"):
        self.change(lambda c: c.execute(internet_usage.insert().values(username=username, month=month,
                                                                       seconds=seconds)))


@pytest.fixture
def setting(database):
    setting = Setting(database)
    open_internet(database, "zhang", "10010001")
    return setting


def test_pap_accept_carries_the_time_left_the_idle_timeout_and_a_welcome(setting):
    setting.used("zhang", 90 * 60)
    assert setting.pap() == AccessDecision(
        True,
        reply_message="欢迎使用免费上网服务。本月剩余上网时长：28 小时 30 分钟。",
        session_timeout=28 * HOUR + 30 * 60,
        idle_timeout=600,
    )


def test_english_and_unlimited(setting, database):
    open_internet(database, "david", "10010005", tier="vip", language="en")
    assert setting.pap("david") == AccessDecision(
        True, reply_message="Welcome to free internet access.", session_timeout=None, idle_timeout=1800
    )


def test_unknown_user_and_wrong_password_get_the_same_answer(setting):
    unknown = setting.pap("nobody")
    wrong = setting.pap(password="not-it-at-all")
    assert unknown == wrong == AccessDecision.reject("bad_password")
    assert wrong.reply_message == "用户名或密码错误。"


def test_wrong_passwords_lock_and_the_lock_holds_against_the_right_one(setting):
    assert [setting.pap(password="guess-%d" % n).reason for n in range(3)] == [
        "bad_password", "bad_password", "locked"
    ]
    assert setting.pap().reason == "locked"
    verifications = setting.threads.verifications
    assert setting.pap(password="guess-4").reason == "locked"
    assert setting.threads.verifications == verifications, "a locked account is not verified"
    setting.change(a.unlock, "zhang")
    setting.clock.advance(5)
    assert setting.pap().accepted


def test_a_right_password_clears_the_wrong_ones_before_it(setting):
    setting.pap(password="guess-1")
    setting.pap(password="guess-2")
    assert setting.pap().accepted
    assert setting.change(a.account, "zhang").failed_logins == 0
    setting.pap(password="guess-3")
    setting.pap(password="guess-4")
    assert setting.pap().accepted, "never 3 wrong in a row"


def test_disabled_is_said_only_to_whoever_knows_the_password(setting):
    setting.change(a.set_enabled, "zhang", False)
    assert setting.pap().reason == "disabled"
    assert setting.pap(password="wrong-one").reason == "bad_password"


def test_quota_exhausted_until_the_next_month(setting):
    setting.used("zhang", 30 * HOUR)
    assert setting.pap() == AccessDecision.reject("quota_exhausted")
    assert setting.pap().reply_message == "本月上网时长已用完。"
    # 2027-01-01 00:00 in Beijing: a new month's quota.
    setting.clock.advance(21 * 24 * HOUR + 12 * HOUR)
    assert setting.pap().session_timeout == 30 * HOUR


def test_already_online_up_to_the_tiers_simultaneous_use(setting, database):
    setting.online("zhang")
    assert setting.pap().reason == "already_online"
    open_internet(database, "wang", "10010002", tier="family")
    setting.online("wang", "w1")
    assert setting.pap("wang").accepted
    setting.online("wang", "w2")
    setting.clock.advance(5)
    assert setting.pap("wang").reason == "already_online"


def test_chap_with_the_sealed_password(setting, database):
    sealed = ChapSecrets(KEY).seal("wang", "chap-pass")
    open_internet(database, "wang", "10010002", password="chap-pass", chap_secret=sealed)
    assert setting.chap("wang", "chap-pass").accepted
    assert setting.chap("wang", "chap-pasS").reason == "bad_password"
    assert setting.change(a.account, "wang").failed_logins == 1
    assert setting.threads.verifications == 0, "CHAP needs no argon2"
    assert setting.pap("wang", "chap-pass").accepted, "PAP still works"


@pytest.mark.parametrize("key, sealed", [(KEY, False), (None, True), (bytes(32), True)])
def test_chap_refused_without_a_secret_a_key_or_the_right_key(database, key, sealed):
    setting = Setting(database, ChapSecrets(key) if key else None)
    sealed = ChapSecrets(KEY).seal("wang", "chap-pass") if sealed else None
    open_internet(database, "wang", "10010002", chap_secret=sealed)
    assert setting.chap("wang", "chap-pass") == AccessDecision.reject("method_not_allowed")
    assert setting.change(a.account, "wang").failed_logins == 0, "not the investor's mistake"


def test_a_remembered_password_needs_no_argon2_and_no_transaction(setting):
    assert setting.pap().accepted
    verifications, transactions = setting.threads.verifications, setting.store.transactions
    assert (verifications, transactions) == (1, 1)
    for _ in range(3):
        assert setting.pap().accepted
    assert (setting.threads.verifications, setting.store.transactions) == (1, 1)
    assert setting.pap("nobody").reason == setting.pap("nobody").reason == "bad_password"
    assert setting.store.transactions == 2, "an unknown user is remembered too"


def test_a_wrong_password_is_never_taken_from_memory(setting):
    setting.pap()
    assert setting.pap(password=PASSWORD + "x").reason == "bad_password"
    assert setting.threads.verifications == 2
    assert setting.pap().accepted


def test_a_password_is_remembered_for_credential_ttl(setting):
    setting.pap()
    setting.clock.advance(setting.policy.credential_ttl - 1)
    setting.pap()
    assert setting.threads.verifications == 1
    setting.clock.advance(1)
    setting.pap()
    assert setting.threads.verifications == 2


def test_a_new_password_is_verified_anew(setting):
    setting.pap()
    setting.change(a.set_password, "zhang", passwords.hash_password("new-password"), None)
    assert setting.pap().accepted, "another process's change is seen when the state expires"
    setting.clock.advance(setting.directory.ttl)
    assert setting.pap().reason == "bad_password"
    assert setting.pap(password="new-password").accepted
    assert setting.threads.verifications == 3
    # A change in this process is seen at once.
    setting.change(a.set_password, "zhang", passwords.hash_password(PASSWORD), None)
    setting.policy.forget("zhang")
    assert setting.pap(password="new-password").reason == "bad_password"


def test_disabled_after_a_remembered_password_is_rejected(setting):
    setting.pap()
    setting.pap()
    setting.change(a.set_enabled, "zhang", False)
    setting.clock.advance(setting.directory.ttl)
    assert setting.pap().reason == "disabled"
    assert setting.threads.verifications == 1
    setting.change(a.set_enabled, "zhang", True)
    setting.directory.forget("zhang")
    assert setting.pap().accepted
    setting.change(a.set_tier, "zhang", "vip")
    setting.directory.forget("zhang")
    assert setting.pap().session_timeout is None


def test_concurrent_requests_with_one_password_verify_it_once(setting):
    setting.threads.held = []
    requests = [AccessRequest("bras-1", "zhang", "pap", password=PASSWORD.encode()) for _ in range(3)]
    decisions = [setting.policy.authenticate(request) for request in requests]
    [(d, function, args)] = setting.threads.held
    d.callback(function(*args))
    assert [fired(decision).accepted for decision in decisions] == [True, True, True]
    assert setting.threads.verifications == 1


class HeldStore(CountingStore):
    """Transactions run when released, in order."""

    def __init__(self, database):
        super().__init__(database)
        self.held = []

    def transaction(self, work, *args, **kwargs):
        self.transactions += 1
        d = defer.Deferred()
        self.held.append((d, work, args))
        return d

    def release(self):
        d, work, args = self.held.pop(0)
        d.callback(self.database.transaction(work, *args))
        return args


def test_users_missed_while_one_is_read_are_read_together(database):
    setting = Setting(database)
    for n, username in enumerate(("zhang", "wang", "li")):
        open_internet(database, username, f"1001000{n}")
    store = HeldStore(database)
    directory = AccountDirectory(store, setting.clock)
    first = directory.get("zhang")
    others = [directory.get(name) for name in ("wang", "li", "wang", "nobody")]
    assert store.release() == (["zhang"], "2026-12")
    assert fired(first).username == "zhang"
    assert store.release() == (["wang", "li", "nobody"], "2026-12")
    assert [state and state.username for state in map(fired, others)] == ["wang", "li", "wang", None]
    assert store.held == []


def test_a_state_forgotten_while_it_is_read_is_not_kept(database):
    setting = Setting(database)
    open_internet(database, "zhang", "10010001")
    store = HeldStore(database)
    directory = AccountDirectory(store, setting.clock)
    d = directory.get("zhang")
    directory.forget("zhang")
    store.release()
    assert fired(d).username == "zhang"
    directory.get("zhang")
    assert store.transactions == 2


def test_a_store_that_fails_fails_the_decision(setting):
    setting.store.transaction = lambda *args: defer.fail(RuntimeError("database down"))
    with pytest.raises(RuntimeError, match="database down"):
        setting.pap()


# decide_now: what the protocol asks first, answered from memory or not at all


def right(username="zhang", password=PASSWORD):
    return AccessRequest("bras-1", username, "pap", password=password.encode())


def test_decide_now_decides_only_from_what_is_remembered(setting):
    assert setting.policy.decide_now(right()) is None, "nothing remembered yet"
    assert (setting.threads.verifications, setting.store.transactions) == (0, 0)
    accepted = setting.pap()
    assert setting.policy.decide_now(right()) is accepted, "the same decision, kept"
    assert (setting.threads.verifications, setting.store.transactions) == (1, 1)
    assert setting.policy.decide_now(right(password="not-it")) is None, "a wrong password goes to argon2"
    assert setting.threads.verifications == 1
    setting.clock.advance(setting.directory.ttl)
    assert setting.policy.decide_now(right()) is None, "the account's state expired"


def test_decide_now_refuses_what_needs_no_password(setting):
    setting.pap("nobody")
    assert setting.policy.decide_now(right("nobody")) == AccessDecision.reject("bad_password")
    for n in range(3):
        setting.pap(password=f"guess-{n}")
    setting.directory.get("zhang")
    assert setting.policy.decide_now(right()) == AccessDecision.reject("locked")


def test_decide_now_leaves_failed_logins_to_authenticate(setting):
    setting.pap()
    setting.pap(password="guess-1")
    setting.directory.get("zhang")
    assert setting.policy.decide_now(right()) is None, "the failed login must be cleared in the store"
    assert setting.pap().accepted
    assert setting.change(a.account, "zhang").failed_logins == 0


def test_decide_now_sees_a_change_once_the_state_is_read_again(setting):
    setting.pap()
    setting.change(a.set_enabled, "zhang", False)
    setting.directory.forget("zhang")
    setting.directory.get("zhang")
    assert setting.policy.decide_now(right()) == AccessDecision.reject("disabled")
    setting.online("zhang")
    setting.change(a.set_enabled, "zhang", True)
    setting.directory.forget("zhang")
    setting.directory.get("zhang")
    assert setting.policy.decide_now(right()).reason == "already_online"
